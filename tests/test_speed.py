"""The speed benchmark's table: the softmax floor and the bound it implies."""
from bench.speed import softmax_floor_ms, write_speed_report


def test_softmax_floor_is_a_positive_time():
    assert softmax_floor_ms(n_items=500, width=16, batch=32, repeats=3) > 0


def test_report_shows_bound_from_recbole_batch_time(tmp_path):
    rows = [{"model": "GRU4Rec", "params": {},
             "suite": {"epoch_s": 2.0, "eval_s": 0.5, "batches": 100, "instances": 25600, "softmax_ms": 5.0},
             "recbole": {"epoch_s": 6.0, "eval_s": 1.0, "batches": 100},
             "speedup_epoch": 3.0, "speedup_eval": 2.0},
            {"model": "Caser", "params": {},
             "suite": {"epoch_s": 1.0, "eval_s": 0.2, "batches": 100, "instances": 25600}}]
    md = write_speed_report(rows, "toy", {}, 40, tmp_path, 100).read_text()
    gru = next(line for line in md.splitlines() if line.startswith("| GRU4Rec"))
    # RecBole: 60 ms a batch, softmax 5 ms -> at most 12x for any harness
    assert "| 3.0x | 5.0 | 12.0x |" in gru
    caser = next(line for line in md.splitlines() if line.startswith("| Caser"))
    assert caser.count("|") == gru.count("|")


def test_time_suite_times_the_engines_own_epoch_and_extrapolates():
    """The timed epoch is engine.train_epoch over the first N batches, scaled to the whole epoch."""
    from bench.engine import training_instances
    from bench.speed import time_suite
    from bench.synthetic import next_item_rule
    from bench.zoo import get_spec, resolve_params

    seqs = next_item_rule(120, 30)
    spec = get_spec("GRU4Rec")
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 16})
    row = time_suite(spec, params, seqs, max_batches=3, device="cpu")
    assert row["timed_batches"] == 3 and row["batches"] > 3
    assert row["epoch_s"] > 0 and row["eval_s"] > 0
    assert row["instances"] == len(training_instances(seqs, 10))
