"""Ray: ``xmr embed --ray`` and ``xmr index --ray`` on a local Ray with 2 CPUs give what the plain paths give (same
items, vectors within float tolerance), on the bundled real images. One Ray for the module (started here, so the
code under test joins it instead of starting its own)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import FIXTURES, SAMPLES, run_cli

from xmr.embed import embed_source, iter_shards


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _all(out):
    vecs, meta = [], []
    for _, v, m in iter_shards(out):
        vecs.append(v.astype(np.float32))
        meta.extend(m)
    return np.concatenate(vecs), meta


def test_embed_on_ray_equals_plain(tmp_path, local_ray):
    src = tmp_path / "photos"
    shutil.copytree(SAMPLES, src, ignore=shutil.ignore_patterns("*.json", "*.md"))
    shutil.copy(FIXTURES / "truncated.jpg", src / "truncated.jpg")
    plain = embed_source(str(src), str(tmp_path / "plain"), "tiny", shard_size=3, dtype="float32")
    on_ray = embed_source(str(src), str(tmp_path / "ray"), "tiny", shard_size=3, dtype="float32", ray=True,
                          workers=2)
    assert (on_ray.shards, on_ray.total, on_ray.failed) == (plain.shards, plain.total, []) == (3, 8, [])
    assert on_ray.skipped == plain.skipped and on_ray.skipped[0]["path"].endswith("truncated.jpg")
    a, ma = _all(tmp_path / "plain")
    b, mb = _all(tmp_path / "ray")
    assert ma == mb
    np.testing.assert_allclose(b, a, atol=1e-5)
    # resumable on Ray too: nothing left to do
    again = embed_source(str(src), str(tmp_path / "ray"), "tiny", shard_size=3, dtype="float32", ray=True, workers=2)
    assert again.resumed == 3 and again.encoded == 0


def test_index_on_ray_equals_plain(tmp_path, capsys, local_ray):
    from xmr.index import IndexStore

    photos = tmp_path / "photos"
    shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.json", "*.md"))
    shutil.copy(FIXTURES / "truncated.jpg", photos / "truncated.jpg")
    code, _, err = run_cli(capsys, "-q", "index", str(photos), "--index", str(tmp_path / "plain"), "--model", "tiny")
    assert code == 0, err
    code, _, err = run_cli(capsys, "-q", "index", str(photos), "--index", str(tmp_path / "ray"), "--model", "tiny",
                           "--ray", "--workers", "2")
    assert code == 0, err
    assert "truncated.jpg" in err  # the bad file is reported the same way

    def items(path):
        with IndexStore(path, readonly=True) as st:
            ids, vecs = map(np.concatenate, zip(*st.iter_vectors()))
            recs = st.get_items([int(i) for i in ids])
            return [(recs[int(i)].path, recs[int(i)].sha256) for i in ids], vecs, st.model_spec, st.skipped()

    p_items, p_vecs, p_model, p_skip = items(tmp_path / "plain")
    r_items, r_vecs, r_model, r_skip = items(tmp_path / "ray")
    assert sorted(r_items) == sorted(p_items) and len(p_items) == 8
    assert r_model == p_model == "tiny" and r_skip == p_skip
    order = {it: k for k, it in enumerate(p_items)}
    np.testing.assert_allclose(r_vecs, p_vecs[[order[it] for it in r_items]], atol=1e-5)


def test_ray_pool_refuses_video_encoders_and_bad_worker_counts(local_ray):
    from xmr.embed.ray_backend import RayEncoderPool
    from xmr.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 1"):
        RayEncoderPool("tiny", workers=0)
    with pytest.raises(ConfigError, match="video encoder"):
        RayEncoderPool("video:tiny+mean", workers=1)
