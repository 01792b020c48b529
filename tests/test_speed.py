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
