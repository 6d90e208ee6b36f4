"""The GPU path, measured: correctness against the CPU path, then throughput (issue 17).

    python benchmarks/gpu_bench.py --device cuda --clip walking_arcade_1080p.mp4 --out $OUT
    python benchmarks/gpu_bench.py --device cpu --quick          # the same code, on a CPU

On the device machine run it through benchmarks/gpu_bench.sh (installs the carried wheels
first; benchmarks/gpu_bench_prepare.sh makes them here). Steps, each in the JSON:

1. checks: each backend available on ``--device`` (torch via onnx2torch; onnxruntime where its
   CUDA provider is there, or on 'cpu') against ONNX Runtime on the CPU on real frames:
   boxes and landmarks (max px), embeddings (min cosine >= 0.999), and the device tensors
   zeroed after the frame (read back) with a positive control (zeroing off sees data).
2. recogniser: faces/s through one embedder call at batch 1..256 (real aligned crops).
3. stages: CameraBatch (N frames letterboxed through the detector in one call, all faces
   through the recogniser in one call) per-stage time for N = 1, 8, 32, 64.
4. streams: N cameras of the clip paced at 25 fps each (frames decoded beforehand, so decode is
   NOT in the figure), newest frame per camera processed in batches; a camera count is
   sustained when >= 95% of frames are processed and capture->decision p95 <= 250 ms.

Prints a short table last; writes gpu_bench.json under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.config import DetectorSection, RecognizerSection  # noqa: E402
from edge.face import device as dev  # noqa: E402
from edge.face.align import Aligner  # noqa: E402
from edge.face.batch import CameraBatch, YuNetBatchDetector  # noqa: E402
from edge.face.detectors.yunet_onnx import YuNetOrtDetector  # noqa: E402
from edge.face.embedders.sface import load_sface  # noqa: E402
from edge.privacy import FaceBuffers  # noqa: E402
from edge.switches import TEST_DISABLE_ENV  # noqa: E402

FPS = 25.0
SIZE = (1920, 1080)


def environment(device: str) -> dict:
    import onnxruntime as ort

    env = {"python": platform.python_version(), "onnxruntime": ort.__version__,
           "ort_providers": ort.get_available_providers(), "device": device,
           "torch": dev.torch_missing() or "importable"}
    if dev.torch_missing() is None:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    return env


def read_frames(clip: Path | None, count: int) -> list[np.ndarray]:
    """``count`` 1080p frames of the clip (or the bundled group photo, shifted, without one)."""
    frames: list[np.ndarray] = []
    if clip is not None and clip.exists():
        cap = cv2.VideoCapture(str(clip))
        while len(frames) < count:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(f, SIZE) if f.shape[1::-1] != SIZE else f)
        cap.release()
    if not frames:
        from edge.node.demo import sample_images_dir

        t1 = cv2.resize(cv2.imread(str(sample_images_dir() / "t1.jpg")), SIZE)
        frames = [np.roll(t1, 37 * i, axis=1) for i in range(count)]
    return frames


def backends(device: str) -> list[str]:
    out = []
    if device == "cpu" or dev.CUDA_EP in __import__("onnxruntime").get_available_providers():
        out.append("onnxruntime")
    if dev.torch_missing() is None and (device == "cpu" or dev.torch_backend().cuda_available()):
        out.append("torch")
    return out


def models(backend: str, device: str, max_batch: int = 256):
    """(detector, embedder) of one backend on ``device``; ORT's bound to device tensors."""
    if backend == "torch":
        tb = dev.torch_backend()
        det = tb.TorchYuNetDetector(DetectorSection(), None, device)
        emb = load_sface(RecognizerSection(backend="torch", device=device, max_batch=max_batch))
        return det, emb
    det = YuNetOrtDetector(DetectorSection(device=device))
    emb = load_sface(RecognizerSection(device=device, max_batch=max_batch))
    det.io_device = emb.io_device = device  # device tensors ('cpu' OrtValues on a CPU)
    return det, emb


def batch_stage(backend: str, device: str, n: int, max_faces: int) -> CameraBatch:
    if backend == "torch":
        det = dev.torch_backend().TorchYuNetBatchDetector(DetectorSection(), SIZE, n, device)
        emb = load_sface(RecognizerSection(backend="torch", device=device, max_batch=256))
    else:
        det = YuNetBatchDetector(DetectorSection(device=device), SIZE, n)
        emb = load_sface(RecognizerSection(device=device, max_batch=256))
        det.io_device = emb.io_device = device
    return CameraBatch(det, emb, max_faces=max_faces, lock=False)


def one_frame(det, emb, frame, zeroize: bool = True) -> tuple[FaceBuffers, int]:
    b = FaceBuffers(64, 128, lock=False, zeroize=zeroize)
    n = det(frame, b)
    Aligner(emb.input_size)(frame, b, list(range(n)))
    emb(b, n)
    return b, n


def checks(device: str, frames: list[np.ndarray]) -> dict:
    ref_det = YuNetOrtDetector(DetectorSection(device="cpu"))
    ref_emb = load_sface(RecognizerSection(device="cpu"))
    out: dict = {}
    for backend in backends(device):
        det, emb = models(backend, device)
        box = lm = 0.0
        cos = 1.0
        faces = 0
        same = True
        zeroed = True
        for f in frames:
            r, n = one_frame(ref_det, ref_emb, f)
            g, m = one_frame(det, emb, f)
            same &= m == n
            if m == n and n:
                box = max(box, float(np.abs(g.boxes[:n] - r.boxes[:n]).max()))
                lm = max(lm, float(np.abs(g.landmarks[:n] - r.landmarks[:n]).max()))
                cos = min(cos, float((g.emb[:n] * r.emb[:n]).sum(1).min()))
                faces += n
            saw = all(g.device.nonzero().values()) if n else True
            g.zeroize()
            r.zeroize()
            zeroed &= saw and g.is_clear()
        os.environ[TEST_DISABLE_ENV] = "1"  # positive control: zeroing off must leave data
        try:
            c, n = one_frame(det, emb, frames[0], zeroize=False)
            c.zeroize()
            control = bool(n) and c.device.nonzero().get("rec_emb", 0) > 0
        finally:
            del os.environ[TEST_DISABLE_ENV]
        ok = same and box <= 0.5 and lm <= 0.5 and cos >= 0.999 and zeroed and control and faces > 0
        out[backend] = {"faces": faces, "same_counts": same, "box_px_max": box, "landmark_px_max": lm,
                        "cosine_min": cos, "device_zeroed_read_back": zeroed,
                        "positive_control_sees_data": control, "pass": ok}
    return out


def crops_of(frames: list[np.ndarray], want: int) -> np.ndarray:
    """Real aligned face crops (from the frames), repeated up to ``want``."""
    det = YuNetOrtDetector(DetectorSection(device="cpu"))
    got: list[np.ndarray] = []
    for f in frames:
        b = FaceBuffers(64, 128, lock=False)
        n = det(f, b)
        Aligner(112)(f, b, list(range(n)))
        got.extend(b.crops[:n].copy())
        b.zeroize()
    if not got:
        raise SystemExit("no faces in the frames")
    return np.stack([got[i % len(got)] for i in range(want)])


def recogniser(backend: str, device: str, crops: np.ndarray, batches: list[int], reps: int) -> list[dict]:
    rows = []
    for bs in batches:
        _, emb = models(backend, device, max_batch=bs)
        b = FaceBuffers(bs, 128, lock=False)
        b.crops[:bs] = crops[:bs]
        emb(b, bs)  # warm-up: kernels, allocator, arena
        t0 = time.perf_counter()
        for _ in range(reps):
            b.n = bs
            emb(b, bs)
        t1 = time.perf_counter()
        b.zeroize()
        t2 = time.perf_counter()
        rows.append({"backend": backend, "batch": bs, "faces_per_s": bs * reps / (t1 - t0),
                     "ms_per_call": 1000 * (t1 - t0) / reps, "zeroize_ms": 1000 * (t2 - t1)})
    return rows


def stages(backend: str, device: str, frames: list[np.ndarray], ns: list[int], reps: int) -> list[dict]:
    rows = []
    for n in ns:
        cb = batch_stage(backend, device, n, max_faces=64 * n)
        bufs = [FaceBuffers(64, 128, lock=False) for _ in range(n)]
        batch = [frames[i % len(frames)] for i in range(n)]
        cb.run(batch, bufs)  # warm-up
        cb.zeroize(bufs)
        cb.stage_s = dict.fromkeys(cb.stage_s, 0.0)
        faces = 0
        t0 = time.perf_counter()
        for _ in range(reps):
            faces += sum(cb.run(batch, bufs))
            cb.zeroize(bufs)
        wall = time.perf_counter() - t0
        row = {"backend": backend, "frames_per_batch": n, "frames_per_s": n * reps / wall,
               "faces_per_batch": faces / reps}
        row.update({f"{k}_ms": 1000 * v / reps for k, v in cb.stage_s.items()})
        rows.append(row)
    return rows


def streams(backend: str, device: str, frames: list[np.ndarray], ns: list[int], seconds: float) -> list[dict]:
    """N cameras paced at 25 fps; each pass takes the newest waiting frame of every camera
    (older ones are dropped: not processed) through one CameraBatch call."""
    rows = []
    for n in ns:
        cb = batch_stage(backend, device, n, max_faces=64 * n)
        bufs = [FaceBuffers(64, 128, lock=False) for _ in range(n)]
        cb.run([frames[0]] * n, bufs)  # warm-up
        cb.zeroize(bufs)
        start = time.perf_counter()
        phase = [i / (FPS * n) for i in range(n)]  # cameras' frames staggered across the 40 ms
        taken = [-1] * n  # last frame index processed per camera
        done = 0
        lat: list[float] = []
        while (now := time.perf_counter() - start) < seconds:
            ready = []
            for c in range(n):
                k = int((now - phase[c]) * FPS)  # newest frame of camera c captured by now
                if k > taken[c] and k >= 0:
                    ready.append((c, k))
            if not ready:
                time.sleep(0.001)
                continue
            batch = [frames[(k + 7 * c) % len(frames)] for c, k in ready]
            cb.run(batch, bufs[:len(ready)])
            cb.zeroize(bufs[:len(ready)])
            t_done = time.perf_counter() - start
            for c, k in ready:
                lat.append(t_done - (phase[c] + k / FPS))
                taken[c] = k
            done += len(ready)
        produced = sum(max(0, int((seconds - p) * FPS) + 1) for p in phase)
        p95 = float(np.percentile(lat, 95)) if lat else float("inf")
        frac = done / produced if produced else 0.0
        rows.append({"backend": backend, "streams": n, "processed_frac": frac,
                     "latency_p95_ms": 1000 * p95, "sustained": frac >= 0.95 and p95 <= 0.25})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    ap.add_argument("--clip", type=Path, default=None, help="the arcade 1080p clip (else the bundled photo)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out/gpu")))
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    ap.add_argument("--seconds", type=float, default=10.0, help="per stream count")
    args = ap.parse_args()
    q = args.quick
    frames = read_frames(args.clip, 8 if q else 50)
    result: dict = {"env": environment(args.device), "quick": q, "command": " ".join(sys.argv)}
    print("env:", json.dumps(result["env"]), flush=True)
    result["checks"] = checks(args.device, frames[:2] if q else frames[::10])
    print("checks:", json.dumps(result["checks"]), flush=True)
    batches = [1, 4] if q else [1, 2, 4, 8, 16, 32, 64, 128, 256]
    ns = [1, 2] if q else [1, 8, 32, 64]
    crops = crops_of(frames[:4], max(batches))
    result["recogniser"], result["stages"], result["streams"] = [], [], []
    for backend in result["checks"]:
        result["recogniser"] += recogniser(backend, args.device, crops, batches, 2 if q else 20)
        result["stages"] += stages(backend, args.device, frames, ns, 1 if q else 5)
        result["streams"] += streams(backend, args.device, frames, ns, 1.0 if q else args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_bench.json").write_text(json.dumps(result, indent=2))
    print("\nrecogniser faces/s by batch:")
    for r in result["recogniser"]:
        print(f"  {r['backend']:12s} batch {r['batch']:4d}  {r['faces_per_s']:9.0f} faces/s  "
              f"{r['ms_per_call']:8.2f} ms/call")
    print("stages (ms per batch of N frames):")
    for r in result["stages"]:
        print(f"  {r['backend']:12s} N={r['frames_per_batch']:3d}  {r['frames_per_s']:7.0f} fps  "
              f"detect {r['detect_ms']:7.1f}  align {r['align_ms']:6.1f}  embed {r['embed_ms']:7.1f}  "
              f"zeroize {r['zeroize_ms']:6.1f}  faces {r['faces_per_batch']:.0f}")
    print("streams at 25 fps each (decode excluded):")
    for r in result["streams"]:
        print(f"  {r['backend']:12s} N={r['streams']:3d}  processed {100 * r['processed_frac']:5.1f}%  "
              f"p95 {r['latency_p95_ms']:7.1f} ms  {'sustained' if r['sustained'] else 'NOT sustained'}")
    print("checks:", {b: c["pass"] for b, c in result["checks"].items()})
    return 0 if result["checks"] and all(c["pass"] for c in result["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
