"""Reference values for the RDP accountant of DP-SGD (generators/src/rdp.rs).

For each (sampling rate q, noise multiplier σ, steps, δ) below this prints the
ε of Google's dp_accounting 0.6.0 `RdpAccountant` (a Poisson-sampled Gaussian
composed `steps` times) on its default orders and on Opacus's, and the ε and
optimal order of Opacus 1.6.0's `RDPAccountant`; then, for ε ∈ {1, 4, 10}
at CTGAN's defaults on Adult, the noise multiplier whose dp_accounting ε is
the target (bisection). The Rust tests in generators/src/rdp.rs pin them.

Opacus's accounting is pure numpy/scipy; its package imports torch, so the
module is loaded from its file and torch is not needed:

    python3 -m venv .venv-dp
    .venv-dp/bin/pip install dp-accounting==0.6.0 && .venv-dp/bin/pip install --no-deps opacus==1.6.0
    .venv-dp/bin/python generators/tests/golden/rdp.py
"""

import importlib.util
import pathlib
import sysconfig

import dp_accounting
from dp_accounting import rdp as dp_rdp

site = pathlib.Path(sysconfig.get_paths()["purelib"])
spec = importlib.util.spec_from_file_location("opacus_rdp", site / "opacus/accountants/analysis/rdp.py")
analysis = importlib.util.module_from_spec(spec)
spec.loader.exec_module(analysis)

# opacus/accountants/rdp.py: RDPAccountant.DEFAULT_ALPHAS
ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def opacus_epsilon(q, sigma, steps, delta):
    rdp = analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=ORDERS)
    eps, order = analysis.get_privacy_spent(orders=ORDERS, rdp=rdp, delta=delta)
    return float(eps), float(order)


def google_epsilon(q, sigma, steps, delta, orders=None):
    acc = dp_rdp.RdpAccountant(orders=orders)  # None: dp_accounting's DEFAULT_RDP_ORDERS
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return float(acc.get_epsilon(delta))


def google_noise(target, delta, q, epochs):
    """The σ whose ε is the target, by bisection on dp_accounting to 1e-12."""
    steps = int(epochs / q)
    lo, hi = 0.1, 100.0
    while hi - lo > 1e-12 * hi:
        mid = (lo + hi) / 2
        if google_epsilon(q, mid, steps, delta) > target:
            lo = mid
        else:
            hi = mid
    return hi


CASES = [
    # Abadi et al. 2016's MNIST run: lot 256 of 60,000, σ 1.1, 60 epochs
    (256 / 60000, 1.1, int(60 / (256 / 60000)), 1e-5),
    (0.01, 1.0, 1000, 1e-5),
    (0.004, 1.5, 10000, 1e-6),
    # CTGAN's defaults on Adult's training part: batch 500 of 26,049 rows, 300 epochs
    (500 / 26049, 0.8, 300 * 26049 // 500, 1e-5),
    (500 / 26049, 2.0, 300 * 26049 // 500, 1e-5),
    (0.1, 0.8, 50, 1e-5),
    (0.25, 3.0, 200, 1e-7),
    (1.0, 2.0, 10, 1e-5),
    (0.001, 0.6, 5000, 1e-5),
]

print("// (q, σ, steps, δ, dp_accounting ε, dp_accounting ε on Opacus's orders, Opacus ε, Opacus order)")
for q, sigma, steps, delta in CASES:
    eps, order = opacus_epsilon(q, sigma, steps, delta)
    print(
        f"({q!r}, {sigma!r}, {steps}, {delta!r}, {google_epsilon(q, sigma, steps, delta)!r}, "
        f"{google_epsilon(q, sigma, steps, delta, ORDERS)!r}, {eps!r}, {order!r}),"
    )

print("// (ε, δ, q, epochs, σ by bisection on dp_accounting)")
for target in (1.0, 4.0, 10.0):
    q, epochs, delta = 500 / 26049, 300, 1e-5
    print(f"({target!r}, {delta!r}, {q!r}, {epochs}, {google_noise(target, delta, q, epochs)!r}),")
