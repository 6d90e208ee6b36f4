"""Speed experiments for the 2-core CPU case, behind the recommendations in docs/PERFORMANCE.md.

Each idea is measured, not assumed:

1. SFace inference engine and threads: ONNX Runtime intra-op threads 1 vs 2 and graph
   optimisation on/off, batch 1 vs a frame's batch, against OpenCV DNN's FaceRecognizerSF,
   on real aligned faces from the video (kept in memory only).
2. Detector input width from ``min_face_px`` 32 / 40 / 48: YuNet time per frame and the
   faces it still finds (recall against a 1280-wide reference pass), then the whole node.
3. Tracker ``reembed_every``: embeddings per frame, fps and the enrolled people still found.
4. Overlapping decode with detection/embedding: the file source's decode-ahead thread vs
   decoding in the node's thread.
5. Recogniser threads 1 vs 2 in the whole node, and the best settings combined.

Node runs go through ``edge.lab.bench.children.run_child`` (a fresh process each, the node's real code);
variants are run round-robin so that load from elsewhere on the machine hits them alike.

    python benchmarks/speed_experiments.py [--video PATH] [--frames 315] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, interleaved, machine_note, table, video_or_sample, write_json  # noqa: E402

from edge.config import load_config  # noqa: E402
from edge.face import model_files as models  # noqa: E402
from edge.face.embedders.onnx_embedder import Embedder, dynamic_batch  # noqa: E402
from edge.face.ort import recogniser_options  # noqa: E402
from edge.face.photos import FaceEngine  # noqa: E402
from edge.face.scaling import YUNET_MIN_FACE_AT_INPUT, detector_width  # noqa: E402
from edge.lab.bench.children import run_child  # noqa: E402
from edge.lab.bench.jobs import ChildJob, strip  # noqa: E402
from edge.lab.bench.run import BENCH_OVERRIDES  # noqa: E402
from edge.lab.bench.sources import video_info  # noqa: E402
from edge.lab.bench.watchlists import auto_watchlist  # noqa: E402
from edge.node.track import iou_matrix  # noqa: E402
from edge.privacy import FaceBuffers  # noqa: E402


def _frames(video: str, positions: list[int]) -> list[np.ndarray]:
    cap = cv2.VideoCapture(video)
    out = []
    for p in positions:
        cap.set(cv2.CAP_PROP_POS_FRAMES, p)
        ok, img = cap.read()
        if ok:
            out.append(img)
    cap.release()
    return out


def exp_embedder(video: str, rounds: int) -> dict[str, Any]:
    cfg = load_config()
    eng = FaceEngine(cfg)
    n = video_info(video)["frames"]
    crops = []
    for img in _frames(video, [int(n * f) for f in (0.2, 0.4, 0.6, 0.8, 0.95)]):
        crops += [f.crop for f in eng.faces(img)]
    crops = crops[:24]
    k = len(crops)
    data = models.read_verified(cfg.recognizer.model, models.models_dir(cfg.models.dir))
    graph, mean, std = dynamic_batch(data)
    variants: dict[str, Any] = {}
    bufs = FaceBuffers(32, 128, lock=False)
    levels = {"opt-all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "opt-basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "opt-off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    for threads in (1, 2):
        for lname, level in levels.items():
            so = recogniser_options(threads)
            so.graph_optimization_level = level
            sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
            variants[f"ort t{threads} {lname}"] = Embedder(sess, mean, std, swap_rb=True, max_batch=16)
    # ORT's thread pool spins while waiting for work; on 2 busy cores that can cost more than it saves
    so = recogniser_options(2)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    variants["ort t2 opt-all no-spin"] = Embedder(sess, mean, std, swap_rb=True, max_batch=16)
    cvrec = cv2.FaceRecognizerSF.create("onnx", np.frombuffer(data, np.uint8), np.zeros(0, np.uint8))

    def ort_batch1(e: Embedder) -> float:
        t = time.perf_counter()
        for c in crops:
            bufs.crops[0] = c
            e(bufs, 1)
        return (time.perf_counter() - t) / k

    def ort_batch7(e: Embedder) -> float:
        t = time.perf_counter()
        for i in range(0, k - 6, 7):
            bufs.crops[:7] = np.stack(crops[i:i + 7])
            e(bufs, 7)
        return (time.perf_counter() - t) / (7 * (k // 7))

    def cv_one() -> float:
        t = time.perf_counter()
        for c in crops:
            cvrec.feature(c)
        return (time.perf_counter() - t) / k

    fns = {}
    for name, e in variants.items():
        ort_batch1(e)  # warm-up
        fns[f"{name} batch1"] = lambda e=e: ort_batch1(e)
        fns[f"{name} batch7"] = lambda e=e: ort_batch7(e)
    cv_one()
    for th in (1, 2):
        def cv_th(th: int = th) -> float:
            old = cv2.getNumThreads()
            cv2.setNumThreads(th)
            try:
                return cv_one()
            finally:
                cv2.setNumThreads(old)
        fns[f"opencv-dnn t{th} batch1"] = cv_th
    res = interleaved(fns, rounds)
    # same model, same crop: the two engines must agree, or the comparison is meaningless
    bufs.crops[0] = crops[0]
    variants["ort t1 opt-all"](bufs, 1)
    a = bufs.emb[0].copy()
    b = cvrec.feature(crops[0]).reshape(-1)
    agree = float(a @ (b / np.linalg.norm(b)))
    bufs.zeroize()
    for c in crops:
        c.fill(0)
    rows = [{"variant": k2, "ms/face (median)": v["median_ms"], "ms/face (min)": v["min_ms"]}
            for k2, v in sorted(res.items(), key=lambda kv: kv[1]["median_ms"])]
    return {"faces": k, "rounds": rounds, "cosine_ort_vs_opencv_same_crop": round(agree, 5), "rows": rows}


def exp_detector(video: str, frames: int) -> dict[str, Any]:
    cfg = load_config()
    data = models.read_verified(cfg.detector.model, models.models_dir(cfg.models.dir))
    det = cv2.FaceDetectorYN.create("onnx", np.frombuffer(data, np.uint8), np.zeros(0, np.uint8), (320, 320),
                                    cfg.detector.score_threshold, cfg.detector.nms_threshold, 5000)
    info = video_info(video)
    w, h = info["width"], info["height"]
    imgs = _frames(video, list(np.linspace(0, info["frames"] - 1, min(frames, info["frames"])).astype(int)))

    def run(width: int) -> tuple[list[np.ndarray], float]:
        size = (width, round(h * width / w))
        det.setInputSize(size)
        boxes = []
        t = time.perf_counter()
        for img in imgs:
            small = img if width == w else cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            _, f = det.detect(small)
            boxes.append(np.zeros((0, 4), np.float32) if f is None else f[:, :4] * (w / width))
        return boxes, (time.perf_counter() - t) / len(imgs)

    ref_w = min(w, 1280)
    ref, ref_t = run(ref_w)
    rows = []
    widths = {m: detector_width(w, m) for m in (24, 32, 40, 48, 64)}
    for m, width in widths.items():
        run(width)  # warm-up at this size
        boxes, dt = run(width)
        found = matched = 0
        for rb, b in zip(ref, boxes, strict=True):
            rb = rb[rb[:, 2] >= m]
            b = b[b[:, 2] >= m]
            found += len(b)
            if len(rb) and len(b):
                matched += int((iou_matrix(rb, b).max(axis=1) >= 0.4).sum())
        total_ref = sum(int((rb[:, 2] >= m).sum()) for rb in ref)
        rows.append({"min_face_px": m, "input_width": width, "detect ms/frame": round(dt * 1e3, 1),
                     "faces/frame >= min": round(found / len(imgs), 2),
                     f"recall vs {ref_w}-wide pass": round(matched / max(total_ref, 1), 3)})
    for img in imgs:
        img.fill(0)
    return {"frames": len(imgs), "reference_width": ref_w, "reference_ms": round(ref_t * 1e3, 1),
            "rule": f"width = frame_w * {YUNET_MIN_FACE_AT_INPUT} / min_face_px, rounded up to 32, >= 320",
            "rows": rows}


def node_runs(video: str, frames: int, rounds: int, blobs: dict, vsub: list[str], hsub: list[str],
              variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant (config overrides + job fields) as a whole-node child run, round-robin."""
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    for r in range(rounds):
        for name, v in variants.items():
            over = {**BENCH_OVERRIDES, **v.get("overrides", {})}
            job = ChildJob(mode="node", video=video, frames=frames, config=None, overrides=over, blobs=blobs,
                           video_subjects=vsub, held_out_subjects=hsub, label=f"{name} ({r + 1}/{rounds})",
                           inline_decode=v.get("inline_decode", False))
            results[name].append(strip(run_child(job)))
    rows = []
    for name, rs in results.items():
        ok = [x for x in rs if "error" not in x]
        if not ok:
            rows.append({"variant": name, "error": rs[0].get("error")})
            continue
        best = max(ok, key=lambda x: x["fps"])
        rows.append({
            "variant": name,
            "fps (best)": best["fps"],
            "fps (all runs)": [x["fps"] for x in ok],
            "detect ms": best["stages_ms"]["detect"],
            "embed ms": best["stages_ms"]["embed"],
            "other ms": best["stages_ms"]["other"],
            "embeddings/frame": best["embedded_per_frame"],
            "faces/frame": best["faces_per_frame"],
            "video people found": f"{len(best['video_subjects_found'])}/"
                                  f"{best.get('video_subjects_total', '?')}",
            "held-out alerted": len(best["held_out_alerted"]),
            "alerts": best["alerts"],
            "cores used": best["cores_used"],
            "other procs (cores)": best.get("other_processes_cores"),
        })
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video")
    ap.add_argument("--frames", type=int, default=315, help="frames per node run (video looped)")
    ap.add_argument("--rounds", type=int, default=2, help="repeats of each variant, round-robin")
    ap.add_argument("--only", nargs="*", default=[],
                    help="embedder detector minface reembed threads overlap combo (default: all)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    video = video_or_sample(args.video, args.out)
    want = set(args.only) or {"embedder", "detector", "minface", "reembed", "threads", "overlap", "combo"}
    res: dict[str, Any] = {"machine": machine_note(), "video": video_info(video)}
    md = [f"# Speed experiments ({res['machine']['at']}, load {res['machine']['loadavg']})", ""]
    if "embedder" in want:
        print("[speed] 1. SFace engines and threads", flush=True)
        e = exp_embedder(video, max(3, args.rounds * 3))
        res["embedder"] = e
        md += ["## SFace: engine, threads, graph optimisation", "",
               f"{e['faces']} real aligned faces; cosine between ORT and OpenCV DNN embeddings of the same "
               f"crop: {e['cosine_ort_vs_opencv_same_crop']}", "",
               table(e["rows"], ["variant", "ms/face (median)", "ms/face (min)"]), ""]
    if "detector" in want:
        print("[speed] 2a. detector input width", flush=True)
        d = exp_detector(video, 40)
        res["detector"] = d
        md += ["## YuNet input width by min_face_px", "", f"rule: {d['rule']}", "",
               table(d["rows"], list(d["rows"][0].keys())), ""]
    node_variants: dict[str, dict[str, Any]] = {}
    if want & {"minface", "reembed", "threads", "overlap", "combo"}:
        # the defaults: min_face_px 32, reembed_every 5, recogniser threads = cores, decode-ahead thread
        node_variants["default config"] = {}
    if "minface" in want:
        for m in (40, 48):
            node_variants[f"min_face_px={m}"] = {"overrides": {"detector": {"min_face_px": m}}}
    if "reembed" in want:
        for r in (1, 3, 10):
            node_variants[f"reembed_every={r}"] = {"overrides": {"tracker": {"reembed_every": r}}}
        node_variants["tracker off"] = {"overrides": {"tracker": {"enabled": False}}}
    if "threads" in want:
        node_variants["recognizer threads=1"] = {"overrides": {"recognizer": {"threads": 1}}}
    if "combo" in want:
        for m in (40, 48):
            node_variants[f"threads=1 + min_face_px={m}"] = {
                "overrides": {"recognizer": {"threads": 1}, "detector": {"min_face_px": m}}}
    if "overlap" in want:
        node_variants["in-line decode (no decode-ahead thread)"] = {"inline_decode": True}
    if node_variants:
        print(f"[speed] node runs: {len(node_variants)} variants x {args.rounds} rounds", flush=True)
        cfg = load_config(overrides=BENCH_OVERRIDES)
        bw = auto_watchlist(cfg, video, 5, 100)
        rows = node_runs(video, args.frames, args.rounds, bw.blobs, bw.video_subjects, bw.held_out_subjects,
                         node_variants)
        res["node_runs"] = {"frames": args.frames, "watchlist": bw.description, "rows": rows}
        cols = ["variant", "fps (best)", "fps (all runs)", "detect ms", "embed ms", "other ms",
                "embeddings/frame", "faces/frame", "video people found", "held-out alerted", "alerts",
                "cores used", "other procs (cores)"]
        md += [f"## Whole node, {args.frames} frames per run ({bw.description})", "", table(rows, cols), ""]
    path = write_json("speed_experiments", res, args.out)
    (args.out / "speed_experiments.md").write_text("\n".join(md))
    print("\n".join(md))
    print(f"[speed] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
