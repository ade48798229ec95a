"""The model, its checkpoint file and batched inference, on small hand-made light curves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from encoder.anomaly import AnomalyScorer
from encoder.batching import IGNORE, FeatureSpec, collate, make_example, make_examples
from encoder.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from encoder.features import FeatureNormalizer, object_features
from encoder.features.metadata import MetadataNormalizer, metadata_matrix
from encoder.inference import Encoder, cpu_has_native_bf16
from encoder.lightcurve import META_FIELDS, LightCurve
from encoder.model.rtf import ModelConfig, RTFModel, supervised_contrastive
from encoder.onnx_model import min_cosine
from encoder.serving import beside, file_sha256, find_export, read_export
from encoder.taxonomy import COARSE_CLASSES, FINE_CLASSES

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def bazin_lc(i: int, rng: np.random.Generator, n: int | None = None, label: str = "SNIa") -> LightCurve:
    n = n or int(rng.integers(4, 40))
    t = 2459000.0 + np.sort(rng.uniform(0, 80, n))
    band = rng.choice(["g", "r"], n)
    t0, rise, fall = 2459020.0, rng.uniform(2, 6), rng.uniform(15, 40)
    flux = np.exp(-(t - t0) / fall) / (1 + np.exp(-(t - t0) / rise))
    mag = 18.5 - 2.5 * np.log10(flux + 1e-3) + (band == "g") * 0.2
    meta = np.full((n, len(META_FIELDS)), np.nan, dtype=np.float32)
    meta[:, META_FIELDS.index("rb")] = rng.uniform(0.5, 1, n)
    return LightCurve.build(
        f"obj{i}", "ztf", t, band, mag=np.clip(mag, 12, 23), mag_err=np.full(n, 0.05), meta=meta, label=label
    )


@pytest.fixture(scope="module")
def lcs() -> list[LightCurve]:
    rng = np.random.default_rng(0)
    labels = ["SNIa", "SNII", "CV", "AGN", "TDE"]
    return [bazin_lc(i, rng, label=labels[i % 5]) for i in range(24)]


def make_spec(lcs: list[LightCurve], *, use_gp: bool = True, use_images: bool = False) -> FeatureSpec:
    spec = FeatureSpec(max_len=32, use_metadata=True, use_images=use_images, use_gp=use_gp, gp_fit=False)
    spec.meta_norm = MetadataNormalizer.fit(metadata_matrix(lc) for lc in lcs)
    if use_gp:
        spec.obj_norm = FeatureNormalizer.fit(np.stack([object_features(lc, use_gp=False) for lc in lcs]))
    return spec


def small_config(spec: FeatureSpec, **kw: object) -> ModelConfig:
    from encoder.features import OBJECT_FEATURE_NAMES

    base = dict(
        d_model=32,
        n_layers=2,
        n_heads=4,
        d_ff=64,
        dropout=0.0,
        max_len=spec.max_len,
        latent_dim=8,
        use_metadata=True,
        use_gp=spec.use_gp,
        gp_dim=len(OBJECT_FEATURE_NAMES),
        coarse_classes=list(COARSE_CLASSES),
        fine_classes=list(FINE_CLASSES),
    )
    return ModelConfig(**(base | kw))


@pytest.mark.parametrize("mode", ["ae", "vae", "vqvae"])
@pytest.mark.parametrize("decoder", ["query", "position"])
def test_every_bottleneck_and_decoder_trains(lcs, mode, decoder):
    torch.manual_seed(0)  # the initial loss depends on the initialisation
    spec = make_spec(lcs)
    model = RTFModel(small_config(spec, mode=mode, decoder=decoder))
    examples = [make_example(lc, spec, fine_index={c: i for i, c in enumerate(FINE_CLASSES)}) for lc in lcs]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        b = collate(examples, spec)
        parts = model.loss(b, model(b))
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        losses.append(float(parts["mse"]))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.6 * losses[0], losses
    out = model.eval()(collate(examples, spec))
    assert out["fingerprint"].shape == (len(lcs), 8)
    assert out["fine_logits"].shape == (len(lcs), len(FINE_CLASSES))


def test_film_decoder_grows_from_a_plain_one_and_trains(lcs):
    torch.manual_seed(0)
    spec = make_spec(lcs)
    examples = [make_example(lc, spec) for lc in lcs]
    plain = RTFModel(small_config(spec)).eval()
    film = RTFModel(small_config(spec, decoder_film=True))
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == {"decoder.film.weight", "decoder.film.bias"} and not unexpected
    b = collate(examples, spec)
    z = plain(b)["z"]
    before = film.eval().reconstruct(z, b.t_rel, b.band)[0]
    assert torch.allclose(before, plain.reconstruct(z, b.t_rel, b.band)[0])  # starts as the same function
    opt = torch.optim.Adam(film.train().parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        parts = film.loss(b, film(b))
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        losses.append(float(parts["mse"]))
    assert np.mean(losses[-5:]) < losses[0], losses
    assert film.decoder.film.weight.abs().sum() > 0  # the modulation is learned, not stuck at zero


def test_truncated_view_is_a_prefix(lcs):
    spec = make_spec(lcs, use_gp=False)
    lc = next(lc for lc in lcs if 5 < len(lc) <= spec.max_len)
    ex = make_example(lc, spec)
    b = collate([ex, ex], spec, lengths=[3, len(ex)])
    assert (~b.pad_mask[0]).sum() == 3
    assert torch.equal(b.phot[0, :3], b.phot[1, :3])
    # a truncated view is what the light curve looked like at its 3rd detection
    alone = collate([make_example(lc.first(3), spec)], spec)
    assert torch.allclose(alone.phot[0], b.phot[0, :3])


def test_many_light_curves_at_once_give_exactly_their_one_at_a_time_features(lcs):
    spec = make_spec(lcs)
    rng = np.random.default_rng(5)
    mixed = [lcs[0].first(1), *lcs[:6], bazin_lc(50, rng, n=60)]  # lengths 1 .. 60, one longer than max_len
    fine_index = {c: i for i, c in enumerate(FINE_CLASSES)}
    coarse_index = {c: i for i, c in enumerate(COARSE_CLASSES)}
    coarse = ["SNIa", None, "AGN", "no such class", "TDE", "CV", "SNIa", None]
    together = make_examples(mixed, spec, fine_index=fine_index, coarse_index=coarse_index, coarse_labels=coarse)
    for lc, ex, c in zip(mixed, together, coarse, strict=True):
        alone = make_example(lc, spec, fine_index=fine_index, coarse_index=coarse_index, coarse_label=c)
        assert ex.object_id == alone.object_id and len(ex) == len(lc)
        assert ex.y_fine == alone.y_fine == fine_index.get(lc.label, IGNORE)
        assert ex.y_coarse == alone.y_coarse == (coarse_index.get(c, IGNORE) if c else IGNORE)
        for name in ("phot", "t_rel", "band", "meta", "objfeat", "levels"):
            a, b = getattr(ex, name), getattr(alone, name)
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
    assert {ex.y_coarse for ex in together} >= {IGNORE, coarse_index["AGN"]} and max(
        e.y_fine for e in together
    ) > IGNORE
    assert together[1].phot[0, 1] == 0.0  # each light curve's first detection has no previous one
    assert make_examples([], spec) == []


def test_long_light_curves_keep_their_most_recent_detections(lcs):
    spec = make_spec(lcs, use_gp=False)
    rng = np.random.default_rng(1)
    lc = bazin_lc(99, rng, n=60)
    b = collate([make_example(lc, spec)], spec)
    assert b.phot.shape[1] == spec.max_len
    assert torch.allclose(b.t_rel[0, -1], torch.tensor(lc.time[-1] - lc.time[0], dtype=torch.float32))


def test_images_simple_and_zoobot_towers(lcs, tmp_path):
    pytest.importorskip("timm")
    spec = make_spec(lcs, use_gp=False)
    cfg = small_config(spec, use_images=True, image_backbone="zoobot", use_gp=False, gp_dim=0)
    model = RTFModel(cfg)
    weights = tmp_path / "zoobot.pt"
    torch.save(model.image.backbone.state_dict(), weights)
    cfg2 = small_config(spec, use_images=True, image_backbone="zoobot", image_weights=str(weights), use_gp=False)
    model2 = RTFModel(cfg2)
    for (k, v), v2 in zip(
        model.image.backbone.state_dict().items(), model2.image.backbone.state_dict().values(), strict=True
    ):
        assert torch.equal(v, v2), k
    assert not any(p.requires_grad for p in model2.image.backbone.parameters())
    stamps = torch.randn(2, 3, 63, 63)
    assert model2.image(stamps).shape == (2, 32)
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="ConvNeXt-pico"):
        RTFModel(small_config(spec, use_images=True, image_backbone="zoobot", image_weights=str(bad)))


def test_checkpoint_round_trip_and_errors(lcs, tmp_path):
    spec = make_spec(lcs)
    model = RTFModel(small_config(spec)).eval()
    path = tmp_path / "m.pt"
    version = save_checkpoint(path, model, spec, AnomalyScorer.unfitted(None), summary={"n_train": 24})
    loaded = load_checkpoint(path)
    assert loaded.version == version and loaded.summary["n_train"] == 24
    a = Encoder(loaded).encode(lcs).vectors
    with torch.inference_mode():
        b = model(collate([make_example(lc, spec) for lc in lcs], spec))["fingerprint"].numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(corrupt)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "future.pt")
    payload["format_version"] = 1
    payload["config"]["d_model"] = 48
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="incompatible"):
        load_checkpoint(tmp_path / "mismatch.pt")


def test_bucketed_batches_return_results_in_input_order(lcs, tmp_path):
    spec = make_spec(lcs)
    model = RTFModel(small_config(spec)).eval()
    enc = Encoder(load_checkpoint_from(model, spec, tmp_path), batch_size=5)
    together = enc.encode(lcs)
    assert together.object_ids == [lc.object_id for lc in lcs]
    one = np.stack([enc.encode([lc]).vectors[0] for lc in lcs])
    np.testing.assert_allclose(together.vectors, one, atol=1e-4)
    assert np.allclose(together.coarse_probs.sum(1), 1, atol=1e-5)
    assert (together.misfit >= 0).all() and ((together.anomaly >= 0) & (together.anomaly <= 1)).all()


def test_bf16_fingerprints_stay_close_to_fp32(lcs, tmp_path):
    spec = make_spec(lcs)
    model = RTFModel(small_config(spec)).eval()
    ckpt = load_checkpoint_from(model, spec, tmp_path)
    a = Encoder(ckpt).encode(lcs).vectors
    b = Encoder(ckpt, precision="bf16").encode(lcs).vectors
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99


@pytest.fixture(scope="module")
def exported(lcs, tmp_path_factory):
    """A checkpoint and a cache folder holding its exported ONNX graph (the export takes seconds)."""
    torch.manual_seed(1)
    spec = make_spec(lcs)
    tmp = tmp_path_factory.mktemp("onnx")
    ckpt = load_checkpoint_from(RTFModel(small_config(spec)).eval(), spec, tmp)
    onnx = Encoder(ckpt, precision="onnx", cache_dir=tmp / "cache")
    return ckpt, tmp / "cache", onnx


def test_onnx_runtime_computes_what_pytorch_does(lcs, exported):
    ckpt, _, onnx = exported
    assert onnx.precision == "onnx" and not onnx.from_cache
    rng = np.random.default_rng(5)
    mixed = [*lcs, bazin_lc(90, rng, n=1), bazin_lc(91, rng, n=70)]  # one detection; beyond max_len
    assert max(len(lc) for lc in mixed) > ckpt.spec.max_len
    want, got = Encoder(ckpt).encode(mixed), onnx.encode(mixed)
    assert min_cosine(want.vectors, got.vectors) >= 0.999
    np.testing.assert_allclose(got.misfit, want.misfit, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got.fine_probs, want.fine_probs, atol=1e-4)
    np.testing.assert_allclose(got.anomaly, want.anomaly, atol=1e-3)
    one = onnx.encode(mixed[:1]).vectors  # a batch of one gives what it gives within a batch
    np.testing.assert_allclose(one[0], got.vectors[0], atol=1e-5)


def test_a_posterior_weight_serves_the_unit_fingerprint_with_its_weighted_class_probabilities(lcs, tmp_path):
    torch.manual_seed(2)
    spec = make_spec(lcs)
    for sub in ("plain", "weighted"):
        (tmp_path / sub).mkdir()
    plain_model = RTFModel(small_config(spec)).eval()
    plain = Encoder(load_checkpoint_from(plain_model, spec, tmp_path / "plain")).encode(lcs)
    weighted_model = RTFModel(small_config(spec, posterior_weight=0.5)).eval()
    weighted_model.load_state_dict(plain_model.state_dict())
    ckpt = load_checkpoint_from(weighted_model, spec, tmp_path / "weighted")
    enc = Encoder(ckpt)
    served = enc.encode(lcs)
    assert enc.dim == 8 + len(FINE_CLASSES) == served.vectors.shape[1]
    unit = plain.vectors / np.linalg.norm(plain.vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(served.vectors[:, :8], unit, atol=1e-5)
    np.testing.assert_allclose(served.vectors[:, 8:], 0.5 * plain.fine_probs, atol=1e-6)
    onnx = Encoder(ckpt, precision="onnx", cache_dir=tmp_path / "cache")  # the exported graph serves the same
    np.testing.assert_allclose(onnx.encode(lcs).vectors, served.vectors, atol=1e-4)
    for bad in (small_config(spec, posterior_weight=-1.0), small_config(spec, posterior_weight=1.0, fine_classes=[])):
        with pytest.raises(ValueError, match="posterior_weight"):
            RTFModel(bad)
    # an anomaly reference of plain fingerprints cannot serve the longer ones: a clear error at load
    scorer = AnomalyScorer.unfitted(None)
    scorer.reference = np.ones((3, 8), np.float32)
    save_checkpoint(tmp_path / "mixed.pt", plain_model, spec, scorer)
    payload = torch.load(tmp_path / "mixed.pt", weights_only=True)
    payload["config"]["posterior_weight"] = 0.5
    torch.save(payload, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="anomaly reference of 8 dims, fingerprints of 21"):
        load_checkpoint(tmp_path / "mixed.pt")


def test_onnx_graph_is_reused_from_the_cache_and_a_damaged_one_replaced(lcs, exported):
    ckpt, cache, first = exported
    (path,) = cache.glob("*.onnx.zip")
    assert path.name.startswith(file_sha256(ckpt.path)[:24])  # keyed by the checkpoint file
    again = Encoder(ckpt, precision="onnx", cache_dir=cache)
    assert again.from_cache
    np.testing.assert_array_equal(again.encode(lcs).vectors, first.encode(lcs).vectors)
    path.write_bytes(b"not an onnx graph")
    repaired = Encoder(ckpt, precision="onnx", cache_dir=cache)
    assert not repaired.from_cache and path.stat().st_size > 10_000
    np.testing.assert_allclose(repaired.encode(lcs).vectors, first.encode(lcs).vectors, atol=1e-6)


def test_a_serving_export_serves_without_pytorch_what_the_checkpoint_does(lcs, exported, tmp_path):
    ckpt, cache, first = exported
    (path,) = cache.glob("*.onnx.zip")
    served = Encoder.load(ckpt.path, precision="onnx", cache_dir=cache)
    assert served.model is None and served.version == ckpt.version and served.dim == first.dim
    want, got = Encoder(ckpt).encode(lcs), served.encode(lcs)
    assert min_cosine(want.vectors, got.vectors) >= 0.999
    np.testing.assert_allclose(got.anomaly, want.anomaly, atol=1e-3)
    t = np.linspace(0, 60, 25)
    for a, b in zip(
        Encoder(ckpt).reconstruct(lcs[0], t, ["g", "r"]), served.reconstruct(lcs[0], t, ["g", "r"]), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-3)
    # fp32 asks for PyTorch; a checkpoint file changed since the export does not take the old graphs
    assert Encoder.load(ckpt.path, precision="fp32", cache_dir=cache).model is not None
    retrained = tmp_path / "retrained.pt"
    retrained.write_bytes(ckpt.path.read_bytes() + b"\0")
    assert find_export(retrained, cache) is None
    # and in a fresh interpreter, nothing of PyTorch is imported
    code = (
        "import sys; from pathlib import Path; from encoder.inference import Encoder; "
        f"e = Encoder.load(Path({str(ckpt.path)!r}), precision='auto', cache_dir=Path({str(cache)!r})); "
        "assert e.model is None; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


def test_the_bundled_checkpoint_ships_its_serving_export():
    export = find_export(DEFAULT_CHECKPOINT, None)
    assert export == beside(DEFAULT_CHECKPOINT), "run: python -m encoder.export encoder/checkpoints/rtf-default.pt"
    info = read_export(export)[0]
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    assert info.version == ckpt.version and info.dim == ckpt.config.served_dim
    served, torch_encoder = Encoder.from_export(export), Encoder(ckpt)
    from training.synthetic import SurveyConfig, generate_survey

    lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=40, seed=5, min_detections=3))
    assert min_cosine(torch_encoder.encode(lcs).vectors, served.encode(lcs).vectors) >= 0.999


def test_auto_precision_is_measured_and_keeps_fingerprints(lcs, exported):
    ckpt, cache, _ = exported
    auto = Encoder(ckpt, precision="auto", cache_dir=cache)
    assert auto.precision in ("fp32", "bf16", "onnx")
    timed = ("fp32", "onnx") if cpu_has_native_bf16() is False else ("fp32", "bf16", "onnx")
    assert all(auto.calibration[p] > 0 for p in timed)
    assert ("bf16_skipped" in auto.calibration) == ("bf16" not in timed)
    if auto.precision != "fp32":
        assert auto.calibration[f"{auto.precision}_min_cosine"] >= 0.999
        assert auto.calibration[auto.precision] <= 0.85 * auto.calibration["fp32"]
    assert (auto.onnx is not None) == (auto.precision == "onnx")
    a, b = Encoder(ckpt).encode(lcs).vectors, auto.encode(lcs).vectors
    assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() > 0.99
    with pytest.raises(ValueError, match="precision"):
        Encoder(ckpt, precision="fp16")


def test_auto_precision_without_an_onnx_export_says_why(lcs, tmp_path):
    spec = make_spec(lcs)
    ckpt = load_checkpoint_from(RTFModel(small_config(spec, decoder="position")).eval(), spec, tmp_path)
    auto = Encoder(ckpt, precision="auto", cache_dir=tmp_path / "cache")
    assert auto.precision in ("fp32", "bf16") and auto.onnx is None
    assert "position decoder" in auto.calibration["onnx_error"]


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    assert cpu_has_native_bf16(info) is False
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_native_bf16(info) is True
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")  # Arm
    assert cpu_has_native_bf16(info) is True
    assert cpu_has_native_bf16(tmp_path / "absent") is None
    info.write_text("nothing useful\n")
    assert cpu_has_native_bf16(info) is None


def test_reconstruct_returns_a_curve_per_band(lcs, tmp_path):
    spec = make_spec(lcs)
    ckpt = load_checkpoint_from(RTFModel(small_config(spec)).eval(), spec, tmp_path)
    mag, sigma = Encoder(ckpt).reconstruct(lcs[0], np.linspace(-10, 100, 50), ["g", "r"])
    assert mag.shape == sigma.shape == (2, 50)
    assert np.isfinite(mag).all() and (sigma > 0).all()


def load_checkpoint_from(model: RTFModel, spec: FeatureSpec, tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, spec, AnomalyScorer.unfitted(None))
    return load_checkpoint(path)


def test_supervised_contrastive_loss_prefers_fingerprints_grouped_by_class():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, IGNORE, IGNORE])
    centres = torch.randn(3, 16) * 3
    grouped = centres[labels.clamp(min=0)] + 0.1 * torch.randn(10, 16)
    shuffled = grouped[torch.randperm(10)]
    assert supervised_contrastive(grouped, labels) < supervised_contrastive(shuffled, labels) - 1.0
    # unlabelled fingerprints take no part: moving them changes nothing
    moved = grouped.clone()
    moved[8:] = torch.randn(2, 16) * 10
    assert torch.isclose(supervised_contrastive(moved, labels), supervised_contrastive(grouped, labels))
    assert supervised_contrastive(grouped, torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])) == 0  # no pairs
