"""Helpers shared by the reference scripts: comparisons, rounding for JSON, file hashes, and a
checker that collects failed invariants (each script exits 1 when one fails)."""

import hashlib

import torch.nn.functional as F


def rel(a, b):
    """||a − b|| / ||b|| in float64 (0 when both are 0)."""
    a, b = a.double(), b.double()
    nb, nd = b.norm().item(), (a - b).norm().item()
    return 0.0 if nd == 0.0 else (nd / nb if nb > 0 else float("inf"))


def maxabs(a, b):
    return (a.double() - b.double()).abs().max().item()


def sig(x, n=4):
    """Round a float for the JSON (keeps the file readable and stable)."""
    return float(f"{x:.{n}g}")


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ce_rows(logits, targets):
    """Per-prediction cross-entropy, [B,T]."""
    Bn, Tn, V = logits.shape
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none").view(Bn, Tn)


class Checker:
    """Call with (condition, description); failures are printed and kept in `failures`."""

    def __init__(self):
        self.failures = []

    def __call__(self, cond, what):
        if not cond:
            self.failures.append(what)
            print("CHECK FAILED:", what)
        return cond
