"""The ONNX query encoder: parity with torch (random batches and real titles), the index
export that carries it, its integrity check, how SearchEngine picks an encoder, and
search rankings that do not depend on the encoder."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import PRETRAIN_CLASSES, PRETRAIN_WORDS, build_pretraining_store
from test_cli import assert_one_line_error
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.errors import TaommError
from taomm.index import IndexIntegrityError, export_index, open_index, sha256_file
from taomm.model import InterBertConfig, InterBertForRetrieval
from taomm.onnx_text import ONNX_NAME, OnnxTextEncoder, export_text_encoder
from taomm.search import SearchEngine, TorchTextEncoder
from taomm.text.tokenizer import TitleTokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VOCAB = SHARED / "bert-base-chinese" / "vocab.txt"
TITLES = SHARED / "real-titles" / "product1m_dev.txt"
QUERIES = ["红色波点半身裙", "蓝色格子衬衫", "白色帆布鞋", "黑色双肩包", "条纹卫衣", "碎花连衣裙", "荷叶边",
           "夏季新款女装纯色百褶裙"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store, a (random) tiny retrieval model and its index with text_encoder.onnx."""
    root = tmp_path_factory.mktemp("onnx")
    store = build_pretraining_store(root / "store", count=40)
    tok = TitleTokenizer(store / "vocab.txt")
    torch.manual_seed(0)
    model = InterBertForRetrieval(InterBertConfig.from_preset("tiny", vocab_size=len(tok), region_feature_dim=32))
    model.save_pretrained(root / "model", vocab_file=store / "vocab.txt")
    export_index(root / "model", store, root / "index", bf16=False, onnx=True)
    return {"root": root, "store": store, "model": root / "model", "index": root / "index"}


@pytest.fixture(scope="module")
def engines(catalog) -> dict[str, SearchEngine]:
    return {name: SearchEngine(catalog["index"], device="cpu", bf16=False, encoder=name) for name in ("torch", "onnx")}


def padded_batch(rng: np.random.Generator, lengths: list[int], vocab: int, pad_id: int = 0):
    """Random token ids (B, max length) and their mask, each row ``lengths[i]`` tokens long."""
    width = max(lengths)
    mask = np.arange(width)[None, :] < np.asarray(lengths)[:, None]  # (B, T)
    input_ids = np.where(mask, rng.integers(0, vocab, (len(lengths), width)), pad_id).astype(np.int64)
    return input_ids, mask


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- parity ------------------------------------------------------------------------------

@pytest.mark.parametrize("lengths", [[2], [40], [64], [7, 3, 2], [23, 23, 23, 23], list(range(2, 34))],
                         ids=["one-short", "one-40", "one-max", "padded-3", "no-padding-4", "padded-32"])
def test_onnx_matches_torch_on_random_batches(engines, lengths: list[int]) -> None:
    torch_encoder, onnx_encoder = engines["torch"].text_encoder, engines["onnx"].text_encoder
    assert (torch_encoder.backend, onnx_encoder.backend) == ("torch", "onnx")
    input_ids, mask = padded_batch(np.random.default_rng(len(lengths)), lengths, len(engines["torch"].tokenizer))
    expected, got = torch_encoder(input_ids, mask), onnx_encoder(input_ids, mask)
    assert got.shape == expected.shape == (len(lengths), 16) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert row_cosines(got, expected).min() >= 0.999
    # padding is ignored: a row alone gives the vector it has in the padded batch
    alone = onnx_encoder(input_ids[-1:, :lengths[-1]], mask[-1:, :lengths[-1]])
    assert row_cosines(alone, got[-1:])[0] >= 0.999


def test_onnx_matches_torch_on_real_titles(tmp_path: Path) -> None:
    if not (VOCAB.is_file() and TITLES.is_file()):
        pytest.skip("shared reference data is absent")
    tok = TitleTokenizer(VOCAB)
    torch.manual_seed(1)
    model = InterBertForRetrieval(InterBertConfig.from_preset("tiny", vocab_size=len(tok))).eval()
    onnx_encoder = OnnxTextEncoder(export_text_encoder(model, tmp_path / ONNX_NAME))
    torch_encoder = TorchTextEncoder(model, torch.device("cpu"), bf16=False)
    titles = [line.split("#####")[1] for line in TITLES.read_text("utf-8").splitlines()[:300] if "#####" in line]
    ids = [[tok.cls_id, *tok.encode(t)[:38].tolist(), tok.sep_id] for t in titles]  # at most 40, as queries
    cosines = []
    for start in range(0, len(ids), 32):
        batch = ids[start:start + 32]
        width = max(len(x) for x in batch)
        input_ids = np.asarray([x + [tok.pad_id] * (width - len(x)) for x in batch], dtype=np.int64)
        mask = input_ids != tok.pad_id
        cosines.append(row_cosines(onnx_encoder(input_ids, mask), torch_encoder(input_ids, mask)))
    cosines = np.concatenate(cosines)
    assert len(cosines) == len(titles) >= 250 and cosines.min() >= 0.999, cosines.min()


# --- the index ---------------------------------------------------------------------------

def test_index_lists_and_hashes_the_onnx_encoder(catalog) -> None:
    index = open_index(catalog["index"])
    assert ONNX_NAME in index.manifest["files"]
    assert index.manifest["files"][ONNX_NAME] == sha256_file(index.path / ONNX_NAME)


def test_export_embeddings_cli_with_onnx(catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    base = ["export-embeddings", "--model", str(catalog["model"]), "--store", str(catalog["store"]), "--fp32"]
    exported = runner.invoke(app, [*base, "--out", str(tmp_path / "index"), "--onnx", "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["onnx"] is True
    version = (tmp_path / "index" / "current").resolve()
    manifest = json.loads((version / "manifest.json").read_text("utf-8"))
    assert manifest["files"][ONNX_NAME] == sha256_file(version / ONNX_NAME)
    found = {}
    for encoder in ("torch", "onnx"):
        result = runner.invoke(app, ["search", "红色波点半身裙", "--index", str(tmp_path / "index"), "--no-rerank",
                                     "--encoder", encoder, "--json"])
        assert result.exit_code == 0, result.output
        found[encoder] = [row["item_id"] for row in json.loads(result.stdout)]
    assert found["onnx"] == found["torch"] and len(found["onnx"]) == 10
    # without the exporter's packages: one clear line, before any vector is computed
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert_one_line_error(runner.invoke(app, [*base, "--out", str(tmp_path / "other"), "--onnx"]), 1,
                          "pip install 'taomm[onnx]'", "onnxscript")
    assert not (tmp_path / "other").exists()


def without_onnx(catalog, tmp_path: Path) -> Path:
    """A copy of the index as exported without --onnx."""
    out = tmp_path / "plain"
    shutil.copytree((catalog["index"] / "current").resolve(), out)
    (out / ONNX_NAME).unlink()
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    del manifest["files"][ONNX_NAME]
    (out / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    return out


def test_tampered_onnx_encoder_is_refused(catalog, tmp_path: Path) -> None:
    out = tmp_path / "index"
    shutil.copytree(catalog["index"], out, symlinks=True)
    path = (out / "current").resolve() / ONNX_NAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights: the graph would still load
    path.write_bytes(bytes(data))
    for encoder in ("auto", "torch", "onnx"):  # a damaged index is refused whole
        with pytest.raises(IndexIntegrityError, match=ONNX_NAME):
            SearchEngine(out, device="cpu", encoder=encoder)
    # the encoder checks the bytes it loads too (the file may change after open_index)
    good = (catalog["index"] / "current").resolve() / ONNX_NAME
    with pytest.raises(IndexIntegrityError, match="sha256"):
        OnnxTextEncoder(good, sha256=sha256_file(path))
    assert OnnxTextEncoder(good, sha256=sha256_file(good)).backend == "onnx"


# --- choosing the encoder ------------------------------------------------------------------

def test_auto_uses_onnx_when_the_index_has_it_and_onnxruntime_imports(catalog, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert SearchEngine(catalog["index"], device="cpu").text_encoder.backend == "onnx"
    assert SearchEngine(catalog["index"], device="cpu", encoder="torch").text_encoder.backend == "torch"
    plain = without_onnx(catalog, tmp_path)
    assert SearchEngine(plain, device="cpu").text_encoder.backend == "torch"
    with pytest.raises(TaommError, match=r"export it again with the ONNX query encoder \(`onnx=True`\)"):
        SearchEngine(plain, device="cpu", encoder="onnx")
    with pytest.raises(TaommError, match="auto, torch, onnx"):
        SearchEngine(catalog["index"], device="cpu", encoder="tensorrt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    assert SearchEngine(catalog["index"], device="cpu").text_encoder.backend == "torch"
    with pytest.raises(TaommError, match=r"pip install 'taomm\[onnx\]' \(onnxruntime is missing\)"):
        SearchEngine(catalog["index"], device="cpu", encoder="onnx")
    result = CliRunner().invoke(app, ["search", "红色波点半身裙", "--index", str(catalog["index"]),
                                      "--encoder", "onnx"])
    assert_one_line_error(result, 1, "onnxruntime is missing")


def test_search_ranks_the_same_with_either_encoder(engines) -> None:
    queries = [*QUERIES, *PRETRAIN_CLASSES, *(w + c for w, c in zip(PRETRAIN_WORDS, PRETRAIN_CLASSES * 3, strict=False))]
    for query in queries:
        for target, rerank in (("item", 0), ("image", 0), ("image", 8)):
            hits = {name: engine.search(query, k=10, rerank=rerank, target=target) for name, engine in engines.items()}
            assert [h.item_id for h in hits["onnx"]] == [h.item_id for h in hits["torch"]], (query, target, rerank)
            np.testing.assert_allclose([h.score for h in hits["onnx"]], [h.score for h in hits["torch"]], atol=1e-4)
