"""Checkpoints and --resume of the faithful TS2-Net trainer (xmr.train.ts2net_vit) on a tiny random local CLIP: a run
killed mid-epoch resumes to the weights, optimiser state and history of an uninterrupted one; `xmr train-head --head
ts2net-vit --resume` with more epochs equals one longer run; other settings, a folder that is no run and another
trainer's run are refused with nothing touched; the per-epoch evaluation equals `xmr eval` on the saved folder."""
from __future__ import annotations

import csv
import json

import pytest
import torch

import _tiny_models as tiny_models
from xmr.errors import ConfigError
from xmr.heads.ts2net_vit import TS2NetViT, TS2NetViTConfig

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file  # noqa: E402


class _Killed(Exception):
    pass


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_models.build("clip", tmp_path_factory.mktemp("ts2res") / "clip")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from xmr.synth.videos import generate_videos

    return generate_videos(tmp_path_factory.mktemp("ts2res") / "s", n=10, seed=1, frames=8, test_fraction=0.5)  # 5 train, 5 test


def _data():
    g = torch.Generator().manual_seed(0)
    px = torch.randn(6, 2, 3, 32, 32, generator=g)
    ids = torch.randint(0, 200, (12, 8), generator=g)
    pairs = [(t, t % 6) for t in range(12)]  # two captions per video: the caption draws use the generator too
    return px, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, pairs


class _BagTower(torch.nn.Module):
    """A replacement text tower (as the benchmark's GRU): token ids -> 16-d."""

    def __init__(self):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(200, 16)
        torch.nn.init.normal_(self.bag.weight, generator=torch.Generator().manual_seed(4))

    def forward(self, ids):
        return self.bag(ids)


def _train(clip_dir, out, tower: bool = False, **kw):
    """3 epochs of 2 steps on 6 random 2-frame clips; ``tower``: the benchmark's path (a replacement text tower,
    the last block trained, the frozen prefix cached, one shifted block)."""
    from xmr.train.ts2net_vit import train_ts2net_vit

    net = TS2NetViT(transformers.CLIPModel.from_pretrained(clip_dir),
                    TS2NetViTConfig(dim=16, max_frames=4, num_frames=2, perturb_samples=16, seed=1,
                                    shift_layers=1 if tower else 2))
    px, texts, pairs = _data()
    args = dict(finetune="whole", epochs=3, lr=3e-3, batch_size=3, seed=5, out=out, base=f"hf:{clip_dir}")
    if tower:
        args.update(finetune="last:1", cache_frozen=True, text_tower=_BagTower())
        texts = texts["input_ids"]
    object.__setattr__(net, "tower", args.get("text_tower"))  # kept for the test, not registered as a submodule
    return train_ts2net_vit(net, px, texts, pairs, **{**args, **kw})


def _same_files(a, b, name):
    x, y = load_file(str(a / name)), load_file(str(b / name))
    return set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("tower", [False, True], ids=["clip-text", "text-tower-cached-prefix"])
def test_killed_run_resumes_to_the_uninterrupted_result(clip_dir, tmp_path, tower):
    full = _train(clip_dir, tmp_path / "full", tower)
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == ["epoch-0002", "epoch-0003"]

    def kill(epoch, step):
        if epoch == 1 and step == 3:  # in the middle of the second epoch (2 steps per epoch)
            raise _Killed

    with pytest.raises(_Killed):
        _train(clip_dir, tmp_path / "k", tower, on_step=kill)
    with pytest.raises(ConfigError, match="pass --resume"):
        _train(clip_dir, tmp_path / "k", tower)
    resumed = _train(clip_dir, tmp_path / "k", tower, resume=True)
    assert resumed.resumed_from == 1
    assert _same_files(tmp_path / "full", tmp_path / "k", "model.safetensors")
    for name in ("model.safetensors", "state.safetensors"):  # optimiser moments and torch RNG too
        assert _same_files(tmp_path / "full" / "checkpoints" / "epoch-0003", tmp_path / "k" / "checkpoints" /
                           "epoch-0003", name)
    strip = [[{k: v for k, v in r.items() if k != "train_s"} for r in m.metrics] for m in (full, resumed)]
    assert strip[0] == strip[1] and full.history == resumed.history and len(full.history) == 3
    if tower:  # the replacement text tower is restored and trained on as well; not giving it is refused
        a, b = full.tower.state_dict(), resumed.tower.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        with pytest.raises(ConfigError, match="text_tower, model.shift_layers differ"):
            _train(clip_dir, tmp_path / "k", False, resume=True, finetune="last:1", cache_frozen=True, epochs=4)
        return
    # the caller's torch RNG is left as it was: the run draws from its own, seeded one
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    _train(clip_dir, tmp_path / "rng", epochs=1)
    assert torch.equal(torch.rand(3), want)
    # another seed gives other weights and losses: the comparisons above can fail
    other = _train(clip_dir, tmp_path / "other", seed=6)
    assert not _same_files(tmp_path / "full", tmp_path / "other", "model.safetensors")
    assert other.history != full.history


def test_resume_refuses_other_settings_and_reads_the_saved_folder_as_before(clip_dir, tmp_path):
    from xmr.encoders import create_encoder

    _train(clip_dir, tmp_path / "r", epochs=1)
    for kw, name in (({"lr": 1e-3}, "lr"), ({"finetune": "last:1"}, "finetune"), ({"seed": 6}, "seed")):
        with pytest.raises(ConfigError, match=f"{name} differ"):
            _train(clip_dir, tmp_path / "r", resume=True, epochs=2, **kw)
    with pytest.raises(ConfigError, match="data.split differ"):
        _train(clip_dir, tmp_path / "r", resume=True, epochs=2, provenance={"split": "test"})
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        _train(clip_dir, tmp_path / "none", resume=True)
    assert not (tmp_path / "none").exists()
    # the folder is a ts2net:DIR folder, as a run without checkpoints wrote it
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model"] == "xmr-ts2net-vit" and cfg["base"] == f"hf:{clip_dir}"
    assert cfg["training"]["epochs_done"] == 1 and len(cfg["training"]["loss_per_epoch"]) == 1
    enc = create_encoder(f"ts2net:{tmp_path / 'r'}", device="cpu")
    w = load_file(str(tmp_path / "r" / "model.safetensors"))
    assert all(torch.equal(enc.ts2net.state_dict()[k], w[k]) for k in w)
    more = _train(clip_dir, tmp_path / "r", resume=True, epochs=2)  # more epochs: fine
    assert more.resumed_from == 1 and [r["epoch"] for r in more.metrics] == [1, 2]
    assert [int(r["epoch"]) for r in csv.DictReader(open(tmp_path / "r" / "metrics.csv"))] == [1, 2]


def _cli(clip_dir, manifest, out, *extra):
    return ["train-head", "--dataset", f"manifest:{manifest}", "--split", "train", "--encoder", f"hf:{clip_dir}",
            "--head", "ts2net-vit", "--frames", "2", "--batch-size", "4", "--lr", "3e-3", "--out", str(out),
            "--config", '{"perturb_samples": 16}', *extra]


def test_cli_resume_with_more_epochs_equals_one_longer_run(clip_dir, videos, tmp_path, capsys):
    from xmr.cli import main

    assert main(_cli(clip_dir, videos, tmp_path / "two", "--epochs", "2")) == 0
    assert main(_cli(clip_dir, videos, tmp_path / "one", "--epochs", "1", "--keep", "1")) == 0
    assert main(_cli(clip_dir, videos, tmp_path / "one", "--epochs", "2", "--resume", "--keep", "1")) == 0
    assert "resumed after epoch 1" in capsys.readouterr().out
    assert _same_files(tmp_path / "two", tmp_path / "one", "model.safetensors")
    assert [p.name for p in (tmp_path / "one" / "checkpoints").iterdir()] == ["epoch-0002"]
    assert main(_cli(clip_dir, videos, tmp_path / "one", "--epochs", "2", "--resume")) == 0
    assert "nothing to do" in capsys.readouterr().out
    for extra, why in ((["--epochs", "3"], "pass --resume"),
                       (["--epochs", "3", "--resume", "--lr", "1e-3"], "lr differ"),
                       (["--epochs", "3", "--resume", "--clip-lr", "1e-5"], "lr differ"),
                       (["--epochs", "3", "--resume", "--frames", "3"], "model.num_frames"),
                       (["--epochs", "1", "--resume"], "would go back"),
                       (["--epochs", "3", "--resume", "--keep", "-1"], "--keep")):
        before = sorted(p.name for p in (tmp_path / "one").rglob("*"))
        assert main(_cli(clip_dir, videos, tmp_path / "one", *extra)) == 2
        assert why in capsys.readouterr().err
        assert sorted(p.name for p in (tmp_path / "one").rglob("*")) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(_cli(clip_dir, videos, mine, "--epochs", "1")) == 2
    assert "is not a training run" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    # another trainer's run (xmr train's state.json) is not resumed as a ts2net-vit run
    other = tmp_path / "other" / "checkpoints" / "epoch-0001"
    other.mkdir(parents=True)
    (other / "state.json").write_text(json.dumps({"epoch": 1, "config": {"dataset": "x"}}))
    assert main(_cli(clip_dir, videos, tmp_path / "other", "--epochs", "2", "--resume")) == 2
    assert "another trainer" in capsys.readouterr().err


def test_per_epoch_evaluation_equals_xmr_eval_of_the_saved_folder(clip_dir, videos, tmp_path, capsys):
    from xmr.cli import main

    out = tmp_path / "ev"
    assert main(_cli(clip_dir, videos, out, "--epochs", "2", "--eval-split", "test")) == 0
    assert "test t2v R@1" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and rows[0]["train_loss"] == ""
    assert main(["-q", "eval", "--dataset", f"manifest:{videos}", "--split", "test", "--model", f"ts2net:{out}",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    for d, a in (("t2i", "t2v"), ("i2t", "v2t")):
        for k in ("R@1", "R@5", "MdR"):
            assert float(rows[-1][f"{a}_{k}"]) == pytest.approx(res[d][k], abs=1e-3), (a, k)


def test_sigkilled_cli_run_resumes_to_the_uninterrupted_result(clip_dir, videos, tmp_path):
    """A real kill (SIGKILL, no clean-up) of `xmr train-head --head ts2net-vit` in another process, at whatever point
    it is after its second checkpoint (possibly while writing one), then `--resume`: the weights of a run never
    interrupted, and no temporary folder left behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from xmr.cli import main
    from xmr.train.state import list_checkpoints

    epochs = ["--epochs", "30"]
    argv = ["-q", *_cli(clip_dir, videos, tmp_path / "k", *epochs)]
    code = f"import sys; from xmr.cli import main; sys.exit(main({argv!r}))"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (tmp_path / "k" / "checkpoints" / "epoch-0002").is_dir():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and list_checkpoints(tmp_path / "k")[-1][0] < 30  # killed mid-run
    assert main(_cli(clip_dir, videos, tmp_path / "k", *epochs, "--resume")) == 0
    assert main(_cli(clip_dir, videos, tmp_path / "full", *epochs)) == 0
    assert _same_files(tmp_path / "full", tmp_path / "k", "model.safetensors")
    assert not list((tmp_path / "k" / "checkpoints").glob(".tmp-*"))
    assert sorted(p.name for p in (tmp_path / "k" / "checkpoints").iterdir()) == ["epoch-0029", "epoch-0030"]


def test_save_every_keep_and_a_corrupt_checkpoint(clip_dir, tmp_path):
    _train(clip_dir, tmp_path / "s", save_every=2, keep=0)
    ck = tmp_path / "s" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["epoch-0002", "epoch-0003"]
    with pytest.raises(ConfigError, match="save-every"):
        _train(clip_dir, tmp_path / "t", save_every=0)
    assert not (tmp_path / "t").exists()
    state = ck / "epoch-0003" / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])  # truncated
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*")}
    with pytest.raises(ConfigError, match="corrupt .*delete that epoch folder"):
        _train(clip_dir, tmp_path / "s", resume=True, epochs=4)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*")} == before
    import shutil

    shutil.rmtree(ck / "epoch-0003")  # as the message says: the run continues from epoch 2
    assert _train(clip_dir, tmp_path / "s", resume=True, epochs=3, save_every=2, keep=0).resumed_from == 2
    _train(clip_dir, tmp_path / "u")
    assert _same_files(tmp_path / "s", tmp_path / "u", "model.safetensors")


def test_restore_returns_the_saved_cuda_rng_and_reads_the_old_key(clip_dir, tmp_path):
    """A CPU run saves no CUDA RNG; a GPU run's ``rng.cuda.N`` (the shared helper of xmr.train.state) and a run saved
    before it (one device's ``system.cuda_rng``) come back from restore() for the trainer to set (no GPU here: the
    tensors are written into the checkpoint by hand)."""
    from safetensors.torch import save_file

    from xmr.train.state import list_checkpoints
    from xmr.train.ts2net_vit_state import restore

    model = _train(clip_dir, tmp_path / "r", epochs=1)
    ckpt = list_checkpoints(tmp_path / "r")[-1][1]
    saved = load_file(str(ckpt / "state.safetensors"))
    assert not any(k.startswith("rng.cuda.") or k == "system.cuda_rng" for k in saved)

    def opt():
        head = [p for n, p in model.named_parameters() if not n.startswith("clip.")]
        clip = [p for p in model.clip.parameters() if p.requires_grad]  # the groups train_ts2net_vit makes
        return torch.optim.AdamW([{"params": head}, {"params": clip}], lr=3e-3)

    meta, _ = restore(ckpt, model, opt())
    assert meta["cuda_rng"] == [] and meta["cuda_rng_legacy"] is None
    states = [torch.arange(d, d + 4, dtype=torch.uint8) for d in range(2)]
    save_file({**saved, "rng.cuda.1": states[1], "rng.cuda.0": states[0]}, str(ckpt / "state.safetensors"))
    meta, _ = restore(ckpt, model, opt())
    assert [s.tolist() for s in meta["cuda_rng"]] == [s.tolist() for s in states] and meta["cuda_rng_legacy"] is None
    save_file({**saved, "system.cuda_rng": states[1]}, str(ckpt / "state.safetensors"))
    meta, _ = restore(ckpt, model, opt())
    assert meta["cuda_rng"] == [] and meta["cuda_rng_legacy"].tolist() == states[1].tolist()
