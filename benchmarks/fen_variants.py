"""fen2 (issue 24 follow-up): adaptive-FEN variants measured with a PyTorch reference of the core.

    PYTHONPATH=$PWD python benchmarks/fen_variants.py exp1 ... exp8   (results: benchmarks/results/fen_variants.json)
"""
import sys, json, time, math
from pathlib import Path; sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(1)
from export.adaptive import AdaptiveCore
from export.onnx_export import trimmed_layer1
from fencli.adaptive import scene_convh, output_layer, pixels_view
from fencli.detectors import grx, slrx, RXStats
from fencli.preprocess import fen_input, value_range
from fencli.io import read_scene
from fencli.metrics import roc_auc
from fencli.synthetic import dense_targets_scene

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCENES = ("abu-airport-1", "abu-airport-2", "hydice", "sandiego", "pavia-centre", "muufl")
def load_all(dense_seeds=(0,)):
    out = {}
    for s in SCENES:
        sc = read_scene(f"{DATA}/{s}.mat"); out[s] = (np.asarray(sc.cube, dtype=np.float32), sc.gt)
    for d in dense_seeds:
        out[f"dense{d}"] = dense_targets_scene(seed=d)
    return out

def prep(cube):
    vr = value_range(cube)
    convh = scene_convh(RXStats(cube.shape[2]).fit(pixels_view(cube)), vr)
    x = fen_input(cube, vr)
    w, b = output_layer(cube.shape[2])
    return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(convh[:, :, None, None], dtype=np.float32)), torch.from_numpy(w[:, :, None, None].copy()), torch.from_numpy(b)

def features(core, x, convh, w, b, head=None):
    """returns (F, x) where y = F + x"""
    with torch.inference_mode():
        g = F.relu(core.conv1(trimmed_layer1(core.layer1, F.conv2d(x, convh))))
        Fo = F.relu(F.conv2d(g, w, b))
    return Fo, x

def hwb(t): return np.ascontiguousarray(t[0].numpy().transpose(1, 2, 0), dtype=np.float32)

def aucs(y, gt):
    return {"grx": roc_auc(grx(y), gt), "slrx": roc_auc(slrx(y), gt)}

# ---- experiments (the three runs recorded in benchmarks/results/fen_variants.json) ----

def sweep(name, data, per_scene):
    """``per_scene(cube, gt) -> {configuration: aucs}`` over the scenes, saved as it goes; then the table."""
    res, t0 = {}, time.time()
    for s, (cube, gt) in data.items():
        res[s] = per_scene(cube, gt)
        print(s, round(time.time() - t0), flush=True)
        json.dump(res, open(f"/tmp/fen_variants_{name}.json", "w"), indent=1)
    table(res)
    return res


def table(res):
    """Per-scene AUCs of every configuration, FE+GRX then FE+SLRX, with the six real scenes' mean."""
    names = list(next(iter(res.values())))
    for m in ("grx", "slrx"):
        print(m.upper(), "".join(f"{s[:8]:>9}" for s in res), "  mean6")
        for n in names:
            v = [res[s][n][m] for s in res]
            print(f"{n[:30]:30}", "".join(f"{z:9.4f}" for z in v), f"{np.mean(v[:6]):8.4f}")


def centred_convh_input(x):
    """ConvH's output for the centred PCA directions applied to x - mean, unit mean square per channel."""
    from fencli.convh import leading_eigenvectors

    B = x.shape[1]
    xp = x[0].double().reshape(B, -1); mu = xp.mean(1, keepdim=True); C = torch.cov(xp)
    k = min(64, B); rows = torch.from_numpy(leading_eigenvectors(C.numpy(), k))  # centred PCA
    z = rows @ (xp - mu); z = z / z.pow(2).mean().sqrt()          # unit mean square per channel
    h = torch.zeros(1, 64, x.shape[2] * x.shape[3], dtype=torch.float64); h[0, :k] = z
    return h.reshape(1, 64, x.shape[2], x.shape[3]).float()


def head_branch(core, h, bands, hw):
    """The enhanced term for ConvH output h: layer1, the head's first hw channels, the output layer."""
    with torch.inference_mode():
        g = trimmed_layer1(core.layer1, h)
        g = F.relu(F.conv2d(g, core.conv1.weight[:hw], core.conv1.bias[:hw]))
        w2, b2 = output_layer(bands, hw)
        return F.relu(F.conv2d(g, torch.from_numpy(w2[:, :, None, None].copy()), torch.from_numpy(b2)))


def exp1():
    # residual weight sweep: y = a*F + x, a relative to variance match a0 = sqrt(var(x)/var(F)) (total, over bands)
    data = load_all()
    core = AdaptiveCore().eval()
    res = {}
    t0 = time.time()
    for s, (cube, gt) in data.items():
        x, convh, w, b = prep(cube)
        Fo, _ = features(core, x, convh, w, b)
        vx = x.var(dim=(0, 2, 3)).sum().item(); vF = Fo.var(dim=(0, 2, 3)).sum().item()
        msx = (x**2).mean().item(); msF = (Fo**2).mean().item()
        a0 = math.sqrt(vx / vF)
        r = {"raw": aucs(cube, gt), "a0": a0, "ratio_ms": math.sqrt(msx/msF)}
        for k in (1.0, 2.0, 4.0, 8.0):
            r[f"var x{k}"] = aucs(hwb(k * a0 * Fo + x), gt)
        r["FE"] = aucs(hwb(Fo + x), gt)
        res[s] = r
        print(s, round(time.time()-t0), json.dumps({k: v if not isinstance(v, dict) else {m: round(z, 4) for m, z in v.items()} for k, v in r.items()}), flush=True)
    json.dump(res, open("/tmp/fen_variants_exp1.json", "w"), indent=1)

def exp2():
    data = load_all((0, 1, 2))
    core = AdaptiveCore().eval()
    torch.manual_seed(0)
    # head 128: a fresh default-init 256->128 conv (seeded), output layer 128 -> B at its own default bound
    head128 = torch.nn.Conv2d(256, 128, 1); head128.load_state_dict({"weight": core.conv1.weight[:128].clone(), "bias": core.conv1.bias[:128].clone()})
    ct = AdaptiveCore().eval()
    with torch.no_grad():
        for blk in ct.layer1:
            wt = blk.conv2.weight; m = torch.zeros_like(wt); m[:, :, 1, 1] = 1; wt.mul_(m)
    res = {}
    t0 = time.time()
    for s, (cube, gt) in data.items():
        x, convh, w, b = prep(cube)
        Fo, _ = features(core, x, convh, w, b)
        r = {}
        for k in (0.5, 0.25):
            r[f"alpha {k}"] = aucs(hwb(k * Fo + x), gt)
        Fc, _ = features(ct, x, convh, w, b)
        r["centre tap"] = aucs(hwb(Fc + x), gt)
        # head 128
        with torch.inference_mode():
            g = F.relu(head128(trimmed_layer1(core.layer1, F.conv2d(x, convh))))
            w2, b2 = output_layer(cube.shape[2], 128)
            F128 = F.relu(F.conv2d(g, torch.from_numpy(w2[:, :, None, None].copy()), torch.from_numpy(b2)))
        r["head 128"] = aucs(hwb(F128 + x), gt)
        # whitened x residual, total variance matched to F's
        xp = pixels_view(hwb(x)).astype(np.float64); xc = xp - xp.mean(0)
        ev, V = np.linalg.eigh(np.cov(xc, rowvar=False)); keep = ev > ev.max() * 1e-10
        wx = xc @ (V[:, keep] / np.sqrt(ev[keep])) @ V[:, keep].T  # ZCA
        Fp = pixels_view(hwb(Fo)).astype(np.float64)
        wx *= math.sqrt(Fp.var(0).sum() / wx.var(0).sum())
        r["whitened x residual"] = aucs((Fp + wx).reshape(cube.shape).astype(np.float32), gt)
        res[s] = r
        print(s, round(time.time()-t0), json.dumps({k: {m: round(z, 4) for m, z in v.items()} for k, v in r.items()}), flush=True)
    json.dump(res, open("/tmp/fen_variants_exp2.json", "w"), indent=1)

def exp3():
    data = load_all((0, 1, 2))
    def centre_balanced(core):
        """centre tap energy = the 8 neighbours' together, kernel Frobenius norm kept"""
        with torch.no_grad():
            for blk in core.layer1:
                wt = blk.conv2.weight; n0 = wt.norm()
                c = wt[:, :, 1, 1].norm(); o = (wt.norm()**2 - c**2).sqrt()
                wt[:, :, 1, 1] *= o / c
                wt.mul_(n0 / wt.norm())
        return core
    def run(core, x, convh, cube, hw=256):
        with torch.inference_mode():
            g = trimmed_layer1(core.layer1, F.conv2d(x, convh))
            g = F.relu(F.conv2d(g, core.conv1.weight[:hw], core.conv1.bias[:hw]))
            w2, b2 = output_layer(cube.shape[2], hw)
            Fo = F.relu(F.conv2d(g, torch.from_numpy(w2[:, :, None, None].copy()), torch.from_numpy(b2)))
        return hwb(Fo + x)
    cfgs = {}
    for seed in (0, 1, 2):
        cfgs[f"s{seed}"] = (AdaptiveCore(seed).eval(), 256)
        cfgs[f"s{seed} head128"] = (AdaptiveCore(seed).eval(), 128)
        cfgs[f"s{seed} cbal"] = (centre_balanced(AdaptiveCore(seed).eval()), 256)
        cfgs[f"s{seed} cbal head128"] = (centre_balanced(AdaptiveCore(seed).eval()), 128)
    def per_scene(cube, gt):
        x, convh, w, b = prep(cube)
        r = {"raw": aucs(cube, gt)}
        for name, (core, hw) in cfgs.items():
            r[name] = aucs(run(core, x, convh, cube, hw), gt)
        return r

    sweep("exp3", data, per_scene)


def exp4():
    data = load_all((0, 1, 2))
    def branch(core, x, convh, bands, hw, k):
        with torch.inference_mode():
            g = trimmed_layer1(core.layer1, F.conv2d(x, convh))
            g = F.relu(F.conv2d(g, core.conv1.weight[:hw], core.conv1.bias[:hw]))
            if k == 0:
                w2, b2 = output_layer(bands, hw)
            else:
                rng = np.random.default_rng([14, bands, k]); bd = 1 / math.sqrt(hw)
                w2, b2 = rng.uniform(-bd, bd, (bands, hw)).astype(np.float32), rng.uniform(-bd, bd, bands).astype(np.float32)
            return F.relu(F.conv2d(g, torch.from_numpy(w2[:, :, None, None].copy()), torch.from_numpy(b2)))
    dw = {s: AdaptiveCore(s, groups=128).eval() for s in (0, 1, 2)}
    full = {s: AdaptiveCore(s).eval() for s in (0, 1, 2)}
    def per_scene(cube, gt):
        x, convh, w, b = prep(cube); B = cube.shape[2]
        r = {}
        Fd = [branch(dw[k], x, convh, B, 128, k) for k in (0, 1, 2)]
        for k in (0, 1, 2):
            r[f"dw head128 s{k}"] = aucs(hwb(Fd[k] + x), gt)
        r["dw head128 ens3 mean"] = aucs(hwb(sum(Fd) / 3 + x), gt)
        r["dw head128 ens3 sum/sqrt3"] = aucs(hwb(sum(Fd) / math.sqrt(3) + x), gt)
        Ff = [branch(full[k], x, convh, B, 128, k) for k in (0, 1, 2)]
        r["full head128 ens3 sum/sqrt3 (1.0x MACs)"] = aucs(hwb(sum(Ff) / math.sqrt(3) + x), gt)
        r["full head128 ens2 sum/sqrt2 (0.68x)"] = aucs(hwb(sum(Ff[:2]) / math.sqrt(2) + x), gt)
        return r

    sweep("exp4", data, per_scene)


def exp5():
    data = load_all((0, 1, 2))
    def branch(core, x, convh, bands, hw):
        with torch.inference_mode():
            g = trimmed_layer1(core.layer1, F.conv2d(x, convh))
            g = F.relu(F.conv2d(g, core.conv1.weight[:hw], core.conv1.bias[:hw]))
            w2, b2 = output_layer(bands, hw)
            return F.relu(F.conv2d(g, torch.from_numpy(w2[:, :, None, None].copy()), torch.from_numpy(b2)))
    def project(Fo, convh):
        V = convh[:, :, 0, 0].double()
        V = V[V.norm(dim=1) > 0]; V = V / V.norm(dim=1, keepdim=True)   # orthonormal rows: ConvH's directions
        f = Fo[0].double().reshape(Fo.shape[1], -1)
        return (V.T @ (V @ f)).reshape(Fo.shape).float()
    cores = {s: AdaptiveCore(s).eval() for s in (0, 1, 2)}
    def per_scene(cube, gt):
        x, convh, w, b = prep(cube); B = cube.shape[2]
        r = {}
        for k in (0, 1, 2):
            for hw in (256, 128):
                Fo = branch(cores[k], x, convh, B, hw)
                r[f"s{k} h{hw} projected"] = aucs(hwb(project(Fo, convh) + x), gt)
                r[f"s{k} h{hw} complement"] = aucs(hwb(Fo - project(Fo, convh) + x), gt)
        return r

    sweep("exp5", data, per_scene)


def exp6():
    data = load_all((0, 1, 2))
    branch = head_branch
    cores = {s: AdaptiveCore(s).eval() for s in (0, 1)}
    def per_scene(cube, gt):
        x, convh, w, b = prep(cube); B = cube.shape[2]
        h = centred_convh_input(x)
        r = {}
        for c in (0, 1):
            for hw in (256, 128):
                r[f"s{c} h{hw} centred convh"] = aucs(hwb(branch(cores[c], h, B, hw) + x), gt)
        return r

    sweep("exp6", data, per_scene)


def exp7():
    data = load_all((0, 1, 2))
    branch = head_branch
    cores = {s: AdaptiveCore(s).eval() for s in (0, 1)}
    def per_scene(cube, gt):
        x, convh, w, b = prep(cube); B = cube.shape[2]
        h = centred_convh_input(x)
        r = {}
        for c in (0,):
            for hw in (256, 128):
                Fo = branch(cores[c], h, B, hw)
                a0 = math.sqrt(x.var(dim=(0, 2, 3)).sum().item() / Fo.var(dim=(0, 2, 3)).sum().item())
                r[f"s{c} h{hw} centred, var-matched"] = aucs(hwb(a0 * Fo + x), gt)
                r[f"s{c} h{hw} centred, a0"] = {"grx": a0, "slrx": a0}
        return r

    sweep("exp7", data, per_scene)


def exp8():
    from fencli.convh import leading_eigenvectors
    data = load_all((0, 1, 2))
    core = AdaptiveCore(0, head_width=128).eval()
    def branch(h, bands):
        with torch.inference_mode():
            g = F.relu(core.conv1(trimmed_layer1(core.layer1, h)))
            w2, b2 = output_layer(bands, 128)
            return F.relu(F.conv2d(g, torch.from_numpy(w2[:, :, None, None].copy()), torch.from_numpy(b2)))
    def convh_out(rows, z, shape):
        z = rows @ z; z = z / z.pow(2).mean().sqrt()
        h = torch.zeros(1, 64, z.shape[1], dtype=torch.float64); h[0, :z.shape[0]] = z
        return h.reshape(1, 64, *shape).float()
    res = {}
    for s, (cube, gt) in data.items():
        x, convh, w, b = prep(cube); B = cube.shape[2]; shape = x.shape[2:]
        xp = x[0].double().reshape(B, -1); mu = xp.mean(1, keepdim=True); C = torch.cov(xp)
        M = xp @ xp.T / xp.shape[1]
        k = min(64, B)
        Rc = torch.from_numpy(leading_eigenvectors(C.numpy(), k)); Ru = torch.from_numpy(leading_eigenvectors(M.numpy(), k))
        r = {}
        r["uncentred dirs on x - mean"] = aucs(hwb(branch(convh_out(Ru, xp - mu, shape), B) + x), gt)
        r["centred dirs on x"] = aucs(hwb(branch(convh_out(Rc, xp, shape), B) + x), gt)
        kh = min(32, B // 2)
        r["centred, top B/2 (<=32)"] = aucs(hwb(branch(convh_out(Rc[:kh], xp - mu, shape), B) + x), gt)
        res[s] = r
        print(s, json.dumps({k: {m: round(z, 4) for m, z in v.items()} for k, v in r.items()}), flush=True)
    json.dump(res, open("/tmp/fen_variants_exp8.json", "w"), indent=1)


if __name__ == "__main__":
    {f.__name__: f for f in (exp1, exp2, exp3, exp4, exp5, exp6, exp7, exp8)}[sys.argv[1]]()
