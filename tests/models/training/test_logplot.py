import json

from rdcodec.models.training.logplot import read_log


def test_read_log_keeps_the_last_of_repeated_steps(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [
        {"step": 10, "bpp": 1.0, "psnr": 20},
        {"step": 20, "bpp": 0.9, "psnr": 21},
        {"step": 20, "val_estimate": {"1": {"psnr": 19, "active_channels": 3}}},
        {"step": 20, "bpp": 0.8, "psnr": 22},  # resumed run repeats step 20
    ]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n{truncated")
    steps, vals = read_log(log)
    assert [r["step"] for r in steps] == [10, 20] and steps[1]["bpp"] == 0.8
    assert len(vals) == 1 and vals[0]["val_estimate"]["1"]["active_channels"] == 3
