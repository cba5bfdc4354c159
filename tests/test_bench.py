"""mfsr bench: one short real run on the smoke model; every section measured and reported."""

from __future__ import annotations

import json

import pytest
import torch

from mfsr.bench.run import BenchOptions, run_bench
from mfsr.bench.training import BF16_PEAK_TFLOPS, bf16_peak_tflops
from mfsr.errors import MfsrError


@pytest.fixture(scope="module")
def tiny_data(tiny_dataset):
    return tiny_dataset(32, (12, 4, 0), ("val",))


@pytest.mark.parametrize("synthesis", ["cpu", "device"])
def test_bench_smoke_run_writes_every_section(tiny_data, tmp_path, synthesis):
    sets = [f"data.dataset={tiny_data}", "data.build=null", "model.n_frames=3", "batch_size=2"]
    sets.append(f"data.synthesis={synthesis}")
    opts = BenchOptions(
        config="smoke",
        sets=sets,
        out=tmp_path / "bench",
        quick=True,
        device="cpu",
        workers=[0, 1],
        losses=["mse", "lpips"],
        eval_images=2,
    )
    doc = run_bench(opts, say=lambda _: None)
    saved = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert saved["loss"] == doc["loss"] == "charbonnier"
    assert [r["loss"] for r in saved["bare_step"]] == ["charbonnier", "mse", "lpips"]
    for row in saved["bare_step"]:
        assert row["ms"] > 0 and row["flops_per_step"] > 0 and row["mfu"] is None  # CPU
    assert saved["bare_step"][2]["random_trunk"] in (True, False)
    assert [f["workers"] for f in saved["feed"]] == [0, 1]
    for f, loop in zip(saved["feed"], saved["loop"]):
        assert f["feed_ratio"] == pytest.approx(
            f["samples_per_s"] / saved["bare_step"][0]["samples_per_s"]
        )
        ratios = sorted(
            r["loop_ms"][str(f["workers"])] / r["bare_ms"] for r in saved["loop_rounds"]
        )
        assert loop["loop_overhead"] == pytest.approx((ratios[0] + ratios[-1]) / 2)  # 2 rounds
    assert set(saved["inference"]) == {"batch_1", "batch_32"}
    assert set(saved["metrics"]["ms_per_image"]) == {
        "mse_psnr", "ssim", "sharpness_cpbd", "lpips", "ffr_dlib"
    }  # fmt: skip
    assert len(saved["loop_rounds"]) == 2 and saved["data_ms_per_batch"] > 0
    assert "projected_study_train_s" not in saved  # only with all four seed losses
    val = saved["validation"]
    assert val["faces_timed"] == 2 and val["batch"] == 2 and val["ms_per_face"] > 0
    assert val["val_faces"] == 4  # the smoke preset's val_limit 8, of the 4 built
    assert val["projected_per_run_s"] == pytest.approx(val["ms_per_face"] * 4 * 2 / 1000)
    assert "Validation pass" in (tmp_path / "bench" / "bench.md").read_text()
    assert saved["peak_rss_mb"] > 0
    text = (tmp_path / "bench" / "bench.md").read_text()
    for heading in ("Training step", "Data feed and loop", "Inference", "Evaluation metrics"):
        assert heading in text
    assert saved["synthesis"] == synthesis
    assert ("device_synthesis" in saved) == ("Synthesis on the device" in text)
    assert ("device_synthesis" in saved) == (synthesis == "device")
    if synthesis == "device":
        assert saved["device_synthesis"]["ms"] > 0 and saved["lr_size"] == [8, 8]


def test_peak_table_and_bad_options(tmp_path):
    assert bf16_peak_tflops(torch.device("cpu")) == (None, "cpu")
    assert dict(BF16_PEAK_TFLOPS)["H100"] > dict(BF16_PEAK_TFLOPS)["A100"]
    with pytest.raises(MfsrError, match="`workers` must be >= 0"):
        run_bench(BenchOptions(config="smoke", workers=[-1], out=tmp_path))
    with pytest.raises(MfsrError, match="unknown loss 'lpipz'"):
        run_bench(BenchOptions(config="smoke", losses=["mse", "lpipz"], out=tmp_path))
    with pytest.raises(MfsrError, match="`compile_mode` must be one of"):
        run_bench(BenchOptions(config="smoke", compile_mode="turbo", out=tmp_path))
