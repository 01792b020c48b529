"""``bench equivalence``: is the suite's ``protocol: paper`` DiffuRec the authors' release?

Both models are built at a small size with dropout 0, the suite's weights are copied into
the other side, both get the same batch with the same timestep, noise and lambda draws,
and three things are compared: the training loss, every parameter's gradient (by suite
name) and the reverse-process scores over the whole catalogue.

A *side* wraps one model behind three calls (see ``SuiteSide`` and ``ReleaseSide``):

- ``copy_weights(suite_model)``: take the suite model's weights;
- ``loss_and_grads(batch, draws)``: (loss, {suite parameter name: gradient});
- ``scores(batch, draws)``: (B, n_items) reverse-process scores, padding column 0 included.

Random draws are fixed by patching the random functions each side calls (torch.randn,
torch.randn_like, torch.randint, torch.normal, the release's step sampler) inside a
context manager that serves one pre-drawn ``Draws`` set in that side's call order, checking
every shape; a side that asks for a draw it was not given, or leaves one unused, fails.
The release is never part of the suite: it is imported at run time from ``--reference DIR``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError

RELEASE_FILES = ("diffurec.py", "model.py", "step_sample.py")
RELEASE_MODULES = ("diffurec", "model", "step_sample")


# ---------------------------------------------------------------------------- inputs
@dataclass
class Batch:
    """One batch in the suite's layout: item_seq (B, L) right-padded, lengths (B,), target (B,)."""

    item_seq: torch.Tensor
    lengths: torch.Tensor
    target: torch.Tensor

    def left_padded(self) -> torch.Tensor:
        """(B, L) the same histories left-padded to width L, as the release's loaders give them."""
        out = torch.zeros_like(self.item_seq)
        width = self.item_seq.shape[1]
        for b, n in enumerate(self.lengths.tolist()):
            out[b, width - n:] = self.item_seq[b, :n]
        return out


@dataclass
class Draws:
    """The random numbers of one training step and one reverse process.

    t (B,) 0-based training steps; noise (B, H) of q_sample; lam_z (B, L, H) standard
    normals of lambda = delta + delta z, laid out like the *left-padded* history (column j
    belongs to left-padded position j); rev_x (B, H) x_T; rev_lam_z (K, B, L, H) and
    rev_noise (K, B, H) per reverse step in visiting order (t = T first; the last step's
    noise is drawn by the release only, and multiplied by 0 there).
    """

    t: torch.Tensor
    noise: torch.Tensor
    lam_z: torch.Tensor
    rev_x: torch.Tensor
    rev_lam_z: torch.Tensor
    rev_noise: torch.Tensor


def make_batch(n_items: int, batch: int, length: int, gen: torch.Generator) -> Batch:
    """Random histories over items 1..n_items; row 0 full length, the last row of length 1."""
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    lengths[0] = length
    if batch > 1:
        lengths[-1] = 1
    seq = torch.randint(1, n_items + 1, (batch, length), generator=gen)
    seq = seq * (torch.arange(length)[None, :] < lengths[:, None])
    target = torch.randint(1, n_items + 1, (batch,), generator=gen)
    return Batch(seq, lengths, target)


def make_draws(batch: int, length: int, hidden: int, steps: int, gen: torch.Generator) -> Draws:
    """One set of draws for a batch of ``batch`` histories of width ``length``."""
    def normal(*shape):
        return torch.randn(*shape, generator=gen)

    return Draws(torch.randint(0, steps, (batch,), generator=gen), normal(batch, hidden),
                 normal(batch, length, hidden), normal(batch, hidden),
                 normal(steps, batch, length, hidden), normal(steps, batch, hidden))


# ---------------------------------------------------------------------------- draw serving
class DrawMismatch(BenchError):
    """A side asked for a draw it was not prepared (wrong function, shape, or count)."""


class _Server:
    """Serves a queue of (function, shape, tensor) in order; anything else is a mismatch."""

    def __init__(self, side: str, queue: list):
        self.side, self.queue, self.served = side, list(queue), 0

    def take(self, func: str, shape) -> torch.Tensor:
        shape = tuple(int(s) for s in shape)
        if not self.queue:
            raise DrawMismatch(f"{self.side}: draw {self.served + 1} ({func} {shape}) beyond the "
                               f"{self.served} prepared")
        want_func, want_shape, value = self.queue.pop(0)
        self.served += 1
        if (want_func, tuple(want_shape)) != (func, shape):
            raise DrawMismatch(f"{self.side}: draw {self.served} is {func} {shape}, prepared "
                               f"{want_func} {tuple(want_shape)}")
        return value.clone()

    def check_done(self):
        if self.queue:
            func, shape, _ = self.queue[0]
            raise DrawMismatch(f"{self.side}: {len(self.queue)} prepared draw(s) unused, next "
                               f"{func} {tuple(shape)}")


def _shape(args) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
        return tuple(args[0])
    return tuple(args)


@contextlib.contextmanager
def serve_draws(side: str, queue: list, sampler=None):
    """Patch torch's random functions (and a release step sampler) to serve ``queue``."""
    server = _Server(side, queue)
    saved = {name: getattr(torch, name) for name in ("randn", "randn_like", "randint", "normal")}

    def randn(*size, **kw):
        return server.take("randn", _shape(size)).to(kw.get("device") or "cpu")

    def randn_like(x, **kw):
        return server.take("randn_like", x.shape).to(x.device, x.dtype)

    def randint(*args, **kw):
        size = kw.get("size", args[-1] if args else None)
        low, high = (0, args[0]) if len(args) == 2 else args[:2]
        value = server.take("randint", size)
        if value.numel() and not (low <= int(value.min()) and int(value.max()) < high):
            raise DrawMismatch(f"{side}: randint over [{low}, {high}) served {value.tolist()}")
        return value.to(kw.get("device") or "cpu")

    def normal(mean, std, *args, **kw):
        return mean + std * server.take("normal", mean.shape).to(mean.device)

    for name, fn in (("randn", randn), ("randn_like", randn_like), ("randint", randint),
                     ("normal", normal)):
        setattr(torch, name, fn)
    if sampler is not None:
        sampler.sample = lambda batch_size, device: (
            server.take("sample", (batch_size,)).long().to(device), torch.ones(batch_size, device=device))
    try:
        yield server
        server.check_done()
    finally:
        for name, fn in saved.items():
            setattr(torch, name, fn)
        if sampler is not None:
            del sampler.sample


# ---------------------------------------------------------------------------- suite side
class SuiteSide:
    """The suite's DiffuRec (a RecBole SequentialRecommender) behind the side interface."""

    def __init__(self, model, name: str = "suite"):
        self.model, self.name = model, name

    def copy_weights(self, suite_model) -> None:
        self.model.load_state_dict(suite_model.state_dict())

    def _lambda(self, lam_z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """lam_z in the model's own column layout: left-padded as given, or shifted to right padding."""
        if getattr(self.model, "attention_padding", "keys") == "release":
            return lam_z
        out = torch.zeros_like(lam_z)
        width = lam_z.shape[1]
        for b, n in enumerate(batch.lengths.tolist()):
            out[b, :n] = lam_z[b, width - n:]
        return out

    def _interaction(self, batch: Batch) -> dict:
        m = self.model
        return {m.ITEM_SEQ: batch.item_seq, m.ITEM_SEQ_LEN: batch.lengths, m.POS_ITEM_ID: batch.target}

    def loss_and_grads(self, batch: Batch, draws: Draws):
        m = self.model
        b, length, hidden = draws.lam_z.shape
        queue = [("randint", (b,), draws.t + 1), ("randn_like", (b, hidden), draws.noise),
                 ("randn", (b, length, hidden), self._lambda(draws.lam_z, batch))]
        m.train()
        m.zero_grad(set_to_none=True)
        with serve_draws(self.name, queue):
            loss = m.calculate_loss(self._interaction(batch))
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    def scores(self, batch: Batch, draws: Draws) -> torch.Tensor:
        m = self.model
        steps, b, length, hidden = draws.rev_lam_z.shape
        queue = [("randn", (b, hidden), draws.rev_x)]
        for k in range(steps):
            queue.append(("randn", (b, length, hidden), self._lambda(draws.rev_lam_z[k], batch)))
            if k < steps - 1:
                queue.append(("randn", (b, hidden), draws.rev_noise[k]))
        m.eval()
        with serve_draws(self.name, queue), torch.no_grad():
            return m.full_sort_predict(self._interaction(batch)).detach()


# ---------------------------------------------------------------------------- release side
def check_reference(directory) -> Path:
    """DIR/src holding the release's files, or a one-line BenchError naming what is missing."""
    src = Path(directory) / "src"
    missing = [f for f in RELEASE_FILES if not (src / f).is_file()]
    if missing:
        raise BenchError(f"--reference {directory}: not the DiffuRec release (no src/{', src/'.join(missing)})")
    return src


def import_release(directory):
    """The release's ``model`` module, imported from DIR/src without leaving its names behind."""
    src = check_reference(directory)
    saved = {name: sys.modules.pop(name) for name in RELEASE_MODULES if name in sys.modules}
    sys.path.insert(0, str(src))
    try:
        return importlib.import_module("model")
    except Exception as err:  # noqa: BLE001  (any failure of foreign code is one line)
        raise BenchError(f"--reference {directory}: importing src/model.py failed: "
                         f"{type(err).__name__}: {err}") from None
    finally:
        sys.path.remove(str(src))
        for name in RELEASE_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def release_name_map(n_layers: int) -> dict:
    """{release parameter name: (suite parameter name, row slice or None)}; qkv split by rows."""
    x = "diffu.xstart_model."
    names = {"item_embeddings.weight": ("item_embedding.weight", None)}
    for part in ("weight", "bias"):
        names[f"LayerNorm.{part}"] = (f"emb_norm.{part}", None)
        names[f"{x}norm_diffu_rep.{part}"] = (f"out_norm.{part}", None)
        for i in (0, 2):
            names[f"{x}time_embed.{i}.{part}"] = (f"step_mlp.{i}.{part}", None)
    return {**names, **{k: v for i in range(n_layers) for k, v in _block_names(i).items()}}


def _block_names(i: int) -> dict:
    r, s = f"diffu.xstart_model.att.transformer_blocks.{i}.", f"blocks.{i}."
    names = {}
    for part in ("weight", "bias"):
        for j in range(3):  # q, k, v: consecutive row blocks of the fused qkv
            names[f"{r}attention.linear_layers.{j}.{part}"] = (f"{s}qkv.{part}", j)
        for rel, suite in (("attention.w_layer", "out"), ("input_sublayer.norm", "ln1"),
                           ("output_sublayer.norm", "ln2"), ("feed_forward.w_1", "ff1"),
                           ("feed_forward.w_2", "ff2")):
            names[f"{r}{rel}.{part}"] = (f"{s}{suite}.{part}", None)
    return names


class ReleaseSide:
    """The authors' release (``Att_Diffuse_model`` over their ``DiffuRec``) behind the side interface."""

    def __init__(self, directory, suite_model, name: str = "release"):
        module = import_release(directory)
        m = suite_model
        args = argparse.Namespace(
            hidden_size=m.hidden_size, dropout=0.0, emb_dropout=0.0, num_blocks=m.n_layers,
            diffusion_steps=m.diffusion_steps, noise_schedule="trunc_lin", rescale_timesteps=True,
            lambda_uncertainty=m.lambda_scale, schedule_sampler_name="lossaware",
            item_num=m.n_items - 1, max_len=m.max_len)
        # the release's LossSecondMomentResampler still calls np.int (removed in NumPy 1.24)
        shim = not hasattr(np, "int")
        if shim:
            np.int = int
        try:
            self.model = module.Att_Diffuse_model(module.create_model_diffu(args), args)
        finally:
            if shim:
                del np.int
        self.name, self.map = name, release_name_map(m.n_layers)
        self.hidden = m.hidden_size

    def copy_weights(self, suite_model) -> None:
        own = dict(self.model.named_parameters())
        suite = dict(suite_model.named_parameters())
        unmapped = sorted(set(suite) - {s for s, _ in self.map.values()})
        if unmapped:
            raise BenchError(f"suite parameters without a release counterpart: {', '.join(unmapped)}")
        with torch.no_grad():
            for rel, (name, rows) in self.map.items():
                value = suite[name] if rows is None else suite[name][rows * self.hidden:(rows + 1) * self.hidden]
                if own[rel].shape != value.shape:
                    raise BenchError(f"{rel} {tuple(own[rel].shape)} <- {name} {tuple(value.shape)}: shapes differ")
                own[rel].copy_(value)

    def loss_and_grads(self, batch: Batch, draws: Draws):
        m = self.model
        b, length, hidden = draws.lam_z.shape
        queue = [("randn_like", (b, hidden), draws.noise), ("sample", (b,), draws.t),
                 ("normal", (b, length, hidden), draws.lam_z)]
        m.train()
        m.zero_grad(set_to_none=True)
        tag = batch.target[:, None]
        with serve_draws(self.name, queue, m.diffu.schedule_sampler):
            _, rep, *_ = m(batch.left_padded(), tag, train_flag=True)
            loss = m.loss_diffu_ce(rep, tag)
        loss.backward()
        return loss.detach(), self._suite_grads()

    def _suite_grads(self) -> dict:
        """The release's gradients under suite names (q, k, v stacked back into qkv)."""
        own = dict(self.model.named_parameters())
        stray = sorted(n for n, p in own.items() if p.grad is not None and n not in self.map)
        if stray:
            raise BenchError(f"release parameters with a gradient but no suite counterpart: {', '.join(stray)}")
        parts: dict = {}
        for rel, (name, rows) in self.map.items():
            grad = own[rel].grad
            grad = torch.zeros_like(own[rel]) if grad is None else grad.detach().clone()
            parts.setdefault(name, {})[rows] = grad
        return {name: (p[None] if None in p else torch.cat([p[0], p[1], p[2]])) for name, p in parts.items()}

    def scores(self, batch: Batch, draws: Draws) -> torch.Tensor:
        m = self.model
        steps, b, length, hidden = draws.rev_lam_z.shape
        queue = [("randn_like", (b, hidden), draws.rev_x)]
        for k in range(steps):
            queue += [("normal", (b, length, hidden), draws.rev_lam_z[k]),
                      ("randn_like", (b, hidden), draws.rev_noise[k])]
        m.eval()
        with serve_draws(self.name, queue, m.diffu.schedule_sampler), torch.no_grad():
            _, rep, *_ = m(batch.left_padded(), batch.target[:, None], train_flag=False)
            return m.diffu_rep_pre(rep).detach()


# ---------------------------------------------------------------------------- comparison
@dataclass
class Line:
    """One comparison: what, its largest absolute difference (None = could not compare), verdict."""

    what: str
    max_abs: float | None
    passed: bool
    note: str = ""

    def render(self) -> str:
        diff = "         -" if self.max_abs is None else f"{self.max_abs:10.3e}"
        return f"{'PASS' if self.passed else 'FAIL'}  {diff}  {self.what}{'  ' + self.note if self.note else ''}"


def _line(what: str, a: torch.Tensor, b: torch.Tensor, tol: float) -> Line:
    if a.shape != b.shape:
        return Line(what, None, False, f"shapes {tuple(a.shape)} vs {tuple(b.shape)}")
    diff = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    return Line(what, diff, diff <= tol)


def compare(suite, reference, batch: Batch, draws: Draws, tol: float) -> list[Line]:
    """Loss, each gradient (suite names, sorted as the suite lists them) and the scores."""
    lines = []
    try:
        loss_a, grads_a = suite.loss_and_grads(batch, draws)
        loss_b, grads_b = reference.loss_and_grads(batch, draws)
    except BenchError as err:
        lines.append(Line("loss and gradients", None, False, str(err)))
    else:
        lines.append(_line(f"loss ({float(loss_a):.6f} vs {float(loss_b):.6f})", loss_a, loss_b, tol))
        for name in list(grads_a) + sorted(set(grads_b) - set(grads_a)):
            if name not in grads_a or name not in grads_b:
                side = suite.name if name not in grads_a else reference.name
                lines.append(Line(f"grad {name}", None, False, f"no gradient on the {side} side"))
            else:
                lines.append(_line(f"grad {name}", grads_a[name], grads_b[name], tol))
    try:
        sa, sb = suite.scores(batch, draws), reference.scores(batch, draws)
    except BenchError as err:
        lines.append(Line("reverse-process scores", None, False, str(err)))
    else:
        lines.append(_line(f"reverse-process scores ({sa.shape[0]} x {sa.shape[1]}, every column, "
                           "padding column 0 included)", sa, sb, tol))
    return lines


# ---------------------------------------------------------------------------- the command
def build_suite_model(hidden: int, layers: int, items: int, length: int, steps: int, seed: int,
                      protocol: str = "paper", **extra):
    """The suite's DiffuRec under ``protocol`` at a small size, dropout 0 (n_items = items + 1)."""
    from bench.zoo import build_model, get_spec, resolve_params

    spec = get_spec("DiffuRec")
    small = {"hidden_size": hidden, "inner_size": 4 * hidden, "n_layers": layers, "n_heads": 4,
             "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0, "emb_dropout_prob": 0.0,
             "diffusion_steps": steps, "reverse_steps": steps, "MAX_ITEM_LIST_LENGTH": length,
             "seed": seed, "reproducibility": True}
    params = resolve_params(spec, small, protocol=protocol)
    params.update(extra)
    torch.manual_seed(seed)
    model, _ = build_model(spec, params, items + 1, 8)
    return model


def inputs(model, batch: int, seed: int) -> tuple[Batch, Draws]:
    """The batch and draws for ``model``'s sizes, from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    data = make_batch(model.n_items - 1, batch, model.max_len, gen)
    return data, make_draws(batch, model.max_len, model.hidden_size, model.diffusion_steps, gen)


def run(args) -> int:
    """``bench equivalence``: print one line per comparison; 0 if all pass, 1 otherwise."""
    check_reference(args.reference)
    model = build_suite_model(args.hidden, args.layers, args.items, args.length, args.steps, args.seed)
    reference = ReleaseSide(args.reference, model)
    reference.copy_weights(model)
    batch, draws = inputs(model, args.batch, args.seed)
    lines = compare(SuiteSide(model), reference, batch, draws, args.tol)
    print(f"suite DiffuRec (protocol paper) vs the release in {args.reference}: hidden {args.hidden}, "
          f"{args.layers} blocks, {args.items} items, batch {args.batch} x {args.length}, T = {args.steps}, "
          f"seed {args.seed}, tolerance {args.tol:g} on the largest absolute difference")
    for line in lines:
        print(line.render())
    failed = sum(not line.passed for line in lines)
    print(f"{len(lines) - failed}/{len(lines)} PASS" + (f", {failed} FAIL" if failed else ""))
    return 1 if failed else 0


def add_equivalence_parser(sub) -> None:
    p = sub.add_parser("equivalence", help="check numerically that the paper-protocol DiffuRec is the "
                                           "authors' release (--reference DIR)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True, metavar="DIR",
                   help="a checkout of github.com/WHUIR/DiffuRec (holding src/diffurec.py, model.py, step_sample.py)")
    for flag, kind, default, what in (("--hidden", int, 16, "hidden size"), ("--layers", int, 2, "Transformer blocks"),
                                      ("--items", int, 30, "catalogue size (padding excluded)"),
                                      ("--batch", int, 4, "histories in the batch"),
                                      ("--length", int, 6, "MAX_ITEM_LIST_LENGTH (the release's max_len)"),
                                      ("--steps", int, 8, "diffusion steps T (reverse process: all T)"),
                                      ("--seed", int, 0, "seed of the weights, batch and draws"),
                                      ("--tol", float, 1e-5, "largest absolute difference that passes")):
        p.add_argument(flag, type=kind, default=default, help=f"{what} (default {default})")
    p.set_defaults(func=run)


__all__ = ["Batch", "Draws", "SuiteSide", "ReleaseSide", "compare", "run", "add_equivalence_parser",
           "build_suite_model", "inputs"]
