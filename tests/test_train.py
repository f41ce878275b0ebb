"""``xmr train``: a run writes checkpoints / metrics / curve and loads as ``trained:DIR`` everywhere; the per-epoch
evaluation equals ``xmr eval``; same seed, same weights; a killed run resumes to the weights of an uninterrupted one;
bad input is refused with one line and nothing overwritten."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from xmr.errors import ConfigError
from xmr.train import TrainConfig, train

SMALL_TINY = {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "heads": 2, "dim": 32,
              "context_length": 48}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from xmr.synth.images import generate_images

    return generate_images(tmp_path_factory.mktemp("synth") / "s", n=32, seed=3, size=24, noise=0.25,
                           mislabel=0.2, test_fraction=0.25)


def _cfg(synth, **kw):
    base = dict(dataset=f"manifest:{synth}", model="tiny", epochs=2, batch_size=8, adapter_hidden=32, lr=5e-3)
    return TrainConfig(**{**base, **kw})


def _weights(d):
    return load_file(str(d / "model.safetensors"))


def test_run_writes_checkpoint_metrics_curve_and_loads_as_trained_model(synth, tmp_path):
    from xmr.data import load_dataset
    from xmr.encoders import create_encoder
    from xmr.eval import evaluate_model

    res = train(_cfg(synth), tmp_path / "run", show_progress=False)
    out = res.out
    assert [r["epoch"] for r in res.history] == [0, 1, 2]  # 0: the frozen start, evaluated in the same run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001", "epoch-0002"]
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and {"train_loss", "t2i_R@1", "i2t_R@5", "rsum"} <= set(rows[1])
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "xmr-trained" and cfg["mode"] == "adapter" and cfg["training"]["epochs_done"] == 2
    # the folder is a model: xmr's own evaluation of it gives the run's last per-epoch numbers
    enc = create_encoder(f"trained:{out}")
    assert enc.dim == 64 and enc.describe()["base"]["spec"] == "tiny"
    test = load_dataset(f"manifest:{synth}", split="test")
    ev = evaluate_model(test, enc, show_progress=False)
    # epoch 0 is the frozen start: residual adapters begin as the identity, so it is the base encoder's evaluation
    ev0 = evaluate_model(test, create_encoder("tiny"), show_progress=False)
    for d in ("t2i", "i2t"):
        for k in ("R@1", "R@5", "R@10", "MdR"):
            assert ev[d][k] == pytest.approx(res.history[-1][f"{d}_{k}"], abs=1e-3), (d, k)
            assert ev0[d][k] == pytest.approx(res.history[0][f"{d}_{k}"], abs=1e-3), (d, k)


def test_training_moves_the_adapters_and_lowers_the_loss(synth, tmp_path):
    res = train(_cfg(synth, epochs=6), tmp_path / "run", show_progress=False)
    losses = [r["train_loss"] for r in res.history[1:]]
    assert losses[-1] < losses[0]
    w = _weights(res.out)
    assert w["image.up.weight"].abs().sum() > 0  # zero-initialised residual branch was trained


def test_same_seed_same_weights_other_seed_other_weights(synth, tmp_path):
    a = _weights(train(_cfg(synth, loss="vsepp"), tmp_path / "a", show_progress=False).out)
    b = _weights(train(_cfg(synth, loss="vsepp"), tmp_path / "b", show_progress=False).out)
    c = _weights(train(_cfg(synth, loss="vsepp", seed=1), tmp_path / "c", show_progress=False).out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("loss", ["infonce", "cots", "ncr"])
def test_killed_run_resumes_to_the_uninterrupted_result(synth, tmp_path, loss):
    lc = {"queue_size": 16} if loss == "cots" else ({"warmup_epochs": 1, "chunk": 8} if loss == "ncr" else {})
    cfg = _cfg(synth, loss=loss, loss_config=lc, epochs=3)
    full = train(cfg, tmp_path / "full", show_progress=False)

    def kill(epoch, step):
        if epoch == 1 and step == 5:  # in the middle of the second epoch (3 steps per epoch)
            raise _Killed

    with pytest.raises(_Killed):
        train(cfg, tmp_path / "killed", on_step=kill, show_progress=False)
    with pytest.raises(ConfigError, match="pass --resume"):
        train(cfg, tmp_path / "killed", show_progress=False)
    resumed = train(cfg, tmp_path / "killed", resume=True, show_progress=False)
    assert resumed.resumed_from == 1
    a, b = _weights(full.out), _weights(resumed.out)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    drop = ("train_s", "eval_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in full.history]
    sa = load_file(str(full.out / "checkpoints" / "epoch-0003" / "state.safetensors"))
    sb = load_file(str(resumed.out / "checkpoints" / "epoch-0003" / "state.safetensors"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("system."))  # queues, peers, splits too


def test_full_mode_trains_tiny_and_the_folder_indexes_and_searches(synth, tmp_path, capsys):
    import shutil

    cfg = _cfg(synth, mode="full", epochs=1, tiny=SMALL_TINY)
    res = train(cfg, tmp_path / "tiny", show_progress=False)
    from xmr.encoders import create_encoder
    from xmr.encoders.tiny import TinyEncoder

    enc = create_encoder(f"trained:{res.out}")
    assert isinstance(enc, TinyEncoder) and enc.dim == 32
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((synth.parent / "images").iterdir())[:5]:
        shutil.copy(p, photos / p.name)
    code, out, err = run_cli(capsys, "index", str(photos), "--index", str(tmp_path / "ix"), "--model",
                             f"trained:{res.out}")
    assert code == 0, err
    code, out, err = run_cli(capsys, "search", "two red circles", "--index", str(tmp_path / "ix"), "--json", "-k", "3")
    assert code == 0, err
    hits = json.loads(out)["results"]
    assert len(hits) == 3 and all(h["path"].endswith(".png") for h in hits)


def test_cli_train_then_eval(synth, tmp_path, capsys):
    out = tmp_path / "cli"
    code, stdout, err = run_cli(capsys, "train", "--dataset", f"manifest:{synth}", "--model", "tiny", "--loss",
                                "vsepp", "--loss-config", '{"margin": 0.1}', "--epochs", "1", "--batch-size", "8",
                                "--adapter-hidden", "16", "--out", str(out))
    assert code == 0, err
    assert "trained vsepp (adapter, tiny) for 1 epochs" in stdout and f"trained:{out}" in stdout
    code, stdout, err = run_cli(capsys, "eval", "--dataset", f"manifest:{synth}", "--split", "test", "--model",
                                f"trained:{out}")
    assert code == 0, err and "R@1" in stdout


# ---------------------------------------------------------------------------------------------------- bad input


def _cli_error(capsys, *argv) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = [x for x in err.strip().splitlines() if x.startswith("xmr: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_out_that_is_not_a_run_is_refused_and_kept(synth, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    msg = _cli_error(capsys, "train", "--dataset", f"manifest:{synth}", "--model", "tiny", "--out", str(out),
                     "--epochs", "1")
    assert "is not a training run" in msg and "nothing was overwritten" in msg
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file" in _cli_error(capsys, "train", "--dataset", f"manifest:{synth}", "--out", str(f))
    assert "holds no checkpoint" in _cli_error(capsys, "train", "--dataset", f"manifest:{synth}", "--resume",
                                               "--out", str(tmp_path / "new"))


def test_model_that_cannot_be_trained_in_the_mode_is_refused(synth, tmp_path, capsys):
    for model, why in (("concept", "training-free"), ("hf:some/model", "with --mode finetune")):
        msg = _cli_error(capsys, "train", "--dataset", f"manifest:{synth}", "--model", model, "--mode", "full",
                         "--out", str(tmp_path / "x"))
        assert why in msg
    assert not (tmp_path / "x").exists()


def test_dataset_without_captions_or_labels_is_refused(synth, tmp_path, capsys):
    bad = tmp_path / "nocaps.jsonl"
    bad.write_text(json.dumps({"media": str(synth.parent / "images" / "00000.png"), "split": "train"}) + "\n")
    msg = _cli_error(capsys, "train", "--dataset", f"manifest:{bad}", "--model", "tiny", "--out", str(tmp_path / "y"))
    assert "no 'captions'" in msg
    nolab = tmp_path / "nolabels.jsonl"
    rows = [json.loads(x) for x in synth.read_text().splitlines()]
    nolab.write_text("".join(json.dumps({"media": str(synth.parent / r["media"]), "captions": r["captions"],
                                         "split": r["split"]}) + "\n" for r in rows))
    msg = _cli_error(capsys, "train", "--dataset", f"manifest:{nolab}", "--model", "tiny", "--loss", "mrl",
                     "--out", str(tmp_path / "z"))
    assert "mrl needs class labels" in msg
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_device_that_accelerate_cannot_take_is_refused(synth, tmp_path):
    with pytest.raises(ConfigError, match="cpu or cuda"):
        train(_cfg(synth), tmp_path / "d", device="cuda:3")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            train(_cfg(synth), tmp_path / "d", device="cuda")
    assert not (tmp_path / "d").exists()


def test_resume_with_other_settings_is_refused(synth, tmp_path):
    train(_cfg(synth, epochs=1), tmp_path / "r", show_progress=False)
    with pytest.raises(ConfigError, match="lr differ"):
        train(_cfg(synth, epochs=2, lr=1e-2), tmp_path / "r", resume=True, show_progress=False)
    more = train(_cfg(synth, epochs=2), tmp_path / "r", resume=True, show_progress=False)  # more epochs: fine
    assert more.resumed_from == 1 and [r["epoch"] for r in more.history] == [0, 1, 2]


def test_train_help_names_every_registered_loss(capsys):
    from xmr.registries import LOSSES, load_all

    load_all("loss")
    with pytest.raises(SystemExit):
        run_cli(capsys, "train", "--help")
    out = capsys.readouterr().out.replace("\n", " ")
    assert all(name in out for name in LOSSES.names())


def test_save_every_checkpoints_every_n_epochs_and_the_last(synth, tmp_path):
    res = train(_cfg(synth, epochs=3), tmp_path / "s", show_progress=False, save_every=2, keep_checkpoints=5)
    assert sorted(p.name for p in (res.out / "checkpoints").iterdir()) == ["epoch-0002", "epoch-0003"]
    assert [int(r["epoch"]) for r in csv.DictReader(open(res.out / "metrics.csv"))] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="save-every"):
        train(_cfg(synth), tmp_path / "t", save_every=0)


def test_sigkilled_cli_run_resumes_to_the_uninterrupted_result(synth, tmp_path):
    """A real kill (SIGKILL, no clean-up) of `xmr train` in another process, at whatever point it is after its first
    checkpoint (possibly while writing one), then `--resume`: the same weights as a run never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["train", "--dataset", f"manifest:{synth}", "--model", "tiny", "--loss", "cots", "--loss-config",
            '{"queue_size": 16}', "--epochs", "12", "--batch-size", "8", "--adapter-hidden", "32", "--lr", "5e-3"]
    argv = ["-q", *args, "--out", str(tmp_path / "k")]
    code = f"import sys; from xmr.cli import main; sys.exit(main({argv!r}))"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (tmp_path / "k" / "checkpoints" / "epoch-0002").is_dir():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from xmr.cli import main
    from xmr.train.state import list_checkpoints

    assert proc.returncode == -signal.SIGKILL and list_checkpoints(tmp_path / "k")[-1][0] < 12  # killed mid-run

    assert main(args + ["--out", str(tmp_path / "k"), "--resume"]) == 0
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "k")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((tmp_path / "k" / "checkpoints").glob(".tmp-*"))


def test_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    from xmr.train.state import check_out

    out = tmp_path / "r"
    (out / "checkpoints" / ".tmp-epoch-0001").mkdir(parents=True)
    assert check_out(out, resume=False) is None  # a fresh start; the stale temp folder is replaced when epoch 1 saves
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        check_out(out, resume=True)


@pytest.mark.parametrize("loss", ["infonce", "vsepp", "ncr", "mrl", "cots", "coder", "neighbourhood"])
def test_bf16_mixed_precision_trains_every_loss(synth, tmp_path, loss):
    lc = {"queue_size": 16} if loss in ("cots", "coder") else ({"warmup_epochs": 1, "chunk": 8} if loss == "ncr" else {})
    res = train(_cfg(synth, loss=loss, loss_config=lc, precision="bf16"), tmp_path / "bf", show_progress=False)
    assert all(np.isfinite(r["train_loss"]) for r in res.history[1:])
    assert all(torch.isfinite(v).all() for v in _weights(res.out).values())


def test_frames_on_an_image_data_set_is_refused_not_ignored(synth, tmp_path, capsys):
    msg = _cli_error(capsys, "train", "--dataset", f"manifest:{synth}", "--model", "tiny", "--mode", "full",
                     "--frames", "8", "--out", str(tmp_path / "f"))
    assert "--frames 8" in msg and "video data sets only" in msg
    assert not (tmp_path / "f").exists()
    with pytest.raises(ConfigError, match="1..256"):
        _cfg(synth, frames=0)


def test_checkpoint_written_with_the_old_default_frames_resumes():
    """Runs saved before --frames became optional recorded frames=4; they match a run that leaves it out."""
    old = TrainConfig(dataset="manifest:x", frames=4)
    assert TrainConfig(dataset="manifest:x").differences(old) == []
    assert TrainConfig(dataset="manifest:x", frames=8).differences(old) == ["frames"]
    assert TrainConfig(dataset="manifest:x").clip_frames == 4


class _FakeCuda:
    """torch.cuda as a GPU run sees it, for the RNG save / restore only (no GPU here: mocks, not a device)."""

    def __init__(self, monkeypatch, devices=2, initialised=True):
        self.devices, self.calls, self.restored = devices, 0, []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: initialised)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.devices)
        monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)  # torch.manual_seed asks for it
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: self.restored.append(list(states)))

    def get(self):  # a different state at every save: the restored one must be the checkpoint's own
        self.calls += 1
        return [torch.tensor([self.calls, d, 7], dtype=torch.uint8) for d in range(self.devices)]


def test_gpu_run_saves_the_cuda_rng_and_resume_restores_it(synth, tmp_path, monkeypatch):
    from xmr.train.state import load_cuda_rng

    cuda = _FakeCuda(monkeypatch)
    cfg = _cfg(synth, epochs=3)
    full = train(cfg, tmp_path / "full", device="cpu", show_progress=False)

    def kill(epoch, step):
        if epoch == 1 and step == 5:
            raise _Killed

    with pytest.raises(_Killed):
        train(cfg, tmp_path / "k", device="cpu", on_step=kill, show_progress=False)
    saved = load_file(str(tmp_path / "k" / "checkpoints" / "epoch-0001" / "state.safetensors"))
    assert {k for k in saved if k.startswith("rng.")} == {"rng.torch", "rng.cuda.0", "rng.cuda.1"}
    assert [s.tolist() for s in load_cuda_rng(tmp_path / "k" / "checkpoints" / "epoch-0001")] == \
        [saved["rng.cuda.0"].tolist(), saved["rng.cuda.1"].tolist()]
    assert cuda.restored == []
    resumed = train(cfg, tmp_path / "k", device="cpu", resume=True, show_progress=False)
    assert resumed.resumed_from == 1
    assert len(cuda.restored) == 1  # the epoch-1 checkpoint's states, not the newest ones get_rng_state_all gave
    assert [s.tolist() for s in cuda.restored[0]] == [saved["rng.cuda.0"].tolist(), saved["rng.cuda.1"].tolist()]
    assert cuda.restored[0][0].tolist()[0] < cuda.calls
    a, b = _weights(full.out), _weights(resumed.out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cpu_checkpoint_has_no_cuda_rng_and_resumes_where_cuda_is_available(synth, tmp_path, monkeypatch):
    """A CPU run writes what checkpoints held before CUDA states were saved (rng.torch only); resuming it on a
    machine with CUDA restores nothing there and ends with the uninterrupted run's weights."""
    cfg = _cfg(synth, epochs=2)
    full = train(cfg, tmp_path / "full", device="cpu", show_progress=False)
    train(_cfg(synth, epochs=1), tmp_path / "r", device="cpu", show_progress=False)
    saved = load_file(str(tmp_path / "r" / "checkpoints" / "epoch-0001" / "state.safetensors"))
    assert {k for k in saved if not k.startswith(("system.", "optim."))} == {"rng.torch"}
    cuda = _FakeCuda(monkeypatch, initialised=False)
    resumed = train(cfg, tmp_path / "r", device="cpu", resume=True, show_progress=False)
    assert resumed.resumed_from == 1 and cuda.restored == [] and cuda.calls == 0
    a, b = _weights(full.out), _weights(resumed.out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_restore_cuda_rng_on_fewer_devices_cpu_only_and_one_device(monkeypatch, caplog):
    from xmr.train.state import restore_cuda_rng

    states = [torch.tensor([i], dtype=torch.uint8) for i in range(3)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert restore_cuda_rng(states) == 0 and restore_cuda_rng([]) == 0  # resumed on a CPU: nothing to set
    cuda = _FakeCuda(monkeypatch, devices=2)
    with caplog.at_level("WARNING", logger="xmr.train.state"):
        assert restore_cuda_rng(states) == 2
    assert [s.item() for s in cuda.restored[0]] == [0, 1] and "3 devices, 2 are visible" in caplog.text
    one = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: one.append((s.item(), i)))
    assert restore_cuda_rng(states, devices=[1]) == 1 and one == [(1, 1)]  # only the device the trainer forked
