"""Dataset cards, checksums, the Steam loader and the exact leave-one-out split."""
import pickle

import numpy as np
import pytest

from conftest import AVAILABLE, needs_data
from datasets.prepare import (
    DataError, card_names, five_core, load_card, load_sequences, read_steam_txt, stats_rows, table1,
)


def test_cards_complete():
    assert set(card_names()) >= {"beauty", "toys", "ml-1m", "steam"}
    for name in card_names():
        card = load_card(name)
        assert card["max_seq_len"] == (200 if name == "ml-1m" else 50)
        assert {"sequences", "items", "actions", "avg_len", "sparsity"} <= set(card["paper"])


def test_unknown_dataset_names_known_ones():
    with pytest.raises(DataError, match="unknown dataset 'beuty'.*beauty"):
        load_card("beuty")


def test_missing_file_names_path_and_checksum(tmp_path):
    with pytest.raises(DataError) as err:
        load_sequences("beauty", tmp_path)
    assert str(tmp_path / "amazon_beauty.pkl") in str(err.value)
    assert load_card("beauty")["sha256"] in str(err.value)


def test_checksum_checked_before_unpickling(tmp_path, cache_dir):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (tmp_path / "toys.pkl").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(DataError, match="checksum mismatch.*toys.pkl.*expected SHA-256 e6e8f7"):
        load_sequences("toys", tmp_path)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=str(tmp_path)):
        load_sequences("ml-1m")


def write_steam(path, users, rng):
    lines = []
    for u, items in users.items():
        lines += [f"{u} {i}" for i in items]
    path.write_text("\n".join(lines) + "\n")


def test_steam_loader_split_and_5core(tmp_path, cache_dir):
    rng = np.random.default_rng(0)
    users = {f"u{u}": [int(x) for x in rng.choice(np.arange(100, 130), size=int(rng.integers(5, 12)))]
             for u in range(60)}
    users["lonely"] = [999, 100, 101]  # < 5 actions and a 1-action item: filtered out
    path = tmp_path / "steam.txt"
    write_steam(path, users, rng)
    seqs = load_sequences("steam", tmp_path)
    assert seqs.n_users == 60
    assert read_steam_txt(path, "steam", "x").five_core_report["was_5core"] is False
    first = seqs.sequence(0)
    # leave-one-out: last item is test, second to last validation
    assert len(first) == len(users["u0"])
    assert seqs.test_items[0] == first[-1] and seqs.valid_items[0] == first[-2]
    # ids re-numbered 1..N, same item -> same id
    assert seqs.items.min() == 1 and seqs.n_items == len(np.unique(seqs.items)) + 1
    mapping = dict(zip(users["u0"], first))
    assert all(mapping[a] == b for a, b in zip(users["u0"], first))


def test_steam_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "steam.txt"
    path.write_text("1 2\n3 4 5\n")
    with pytest.raises(DataError, match=r"steam.txt:2"):
        read_steam_txt(path, "steam", "x")


def test_five_core_iterates():
    pairs = [(f"u{u}", f"i{i}") for u in range(5) for i in range(5)] + [("u0", "rare")]
    kept, report = five_core(pairs)
    assert ("u0", "rare") not in kept and report["rounds"] == 1 and len(kept) == 25


@needs_data
@pytest.mark.parametrize("name", AVAILABLE)
def test_table1_and_flags(name):
    row = stats_rows([name])[0]
    card = load_card(name)
    assert row["ours"]["sequences"] == card["paper"]["sequences"]
    if name == "ml-1m":
        assert "items" in row["differs"] and row["ours"]["items"] == 3706
    if name == "beauty":
        assert row["differs"] == ["avg_len"]  # 8.88 in the file vs 8.53 in Table 1


@needs_data
@pytest.mark.parametrize("name", AVAILABLE)
def test_recbole_split_equals_authors_split(name, tmp_path):
    """RecBole's LS valid_and_test split reproduces the released split for every user."""
    from bench.recbole_path import recbole_data
    from bench.zoo import get_spec, resolve_params

    seqs = load_sequences(name)
    spec = get_spec("SASRec")
    max_len = load_card(name)["max_seq_len"]
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": max_len})
    _, dataset, train, valid, test = recbole_data(spec.cls, params, seqs, tmp_path)
    tokens = dataset.field2id_token["item_id"]
    item_tokens = np.array([0] + [int(t) for t in tokens[1:]], dtype=np.int64)  # 0 = [PAD]
    user_tokens = dataset.field2id_token["user_id"]
    for split, loader, shift in (("valid", valid, 2), ("test", test, 1)):
        feat = loader.dataset.inter_feat
        users = np.array([int(user_tokens[u]) for u in feat["user_id"].numpy()])
        assert len(users) == seqs.n_users and len(set(users)) == seqs.n_users
        targets = item_tokens[feat["item_id"].numpy()]
        expected = seqs.items[seqs.offsets[1:] - shift][users]
        assert np.array_equal(targets, expected), f"{split} targets differ"
        hist = item_tokens[feat["item_id_list"].numpy()]
        lengths = feat["item_length"].numpy()
        for row, u in enumerate(users):
            end = seqs.offsets[u + 1] - shift
            want = seqs.items[max(seqs.offsets[u], end - max_len):end]
            assert lengths[row] == len(want) and np.array_equal(hist[row, : lengths[row]], want)
    from bench.engine import training_instances

    assert len(train.dataset) == len(training_instances(seqs, max_len))
