"""Reference values for the zCDP accountant (generators/src/accountant.rs).

OpenDP's exact ρ-zCDP → (ε, δ) conversion (the one smartnoise-synth uses) gives
ε for each (ρ, δ) below; the Rust test `accountant_matches_opendp` pins them.

    python3 -m venv .venv-dp && .venv-dp/bin/pip install opendp==0.14.2
    .venv-dp/bin/python generators/tests/golden/accountant.py
"""

import opendp.prelude as dp

dp.enable_features("contrib", "floating-point")

for rho in (0.001, 0.01, 0.1, 0.5, 1.0, 2.5):
    for delta in (1e-5, 1e-9):
        # A Gaussian mechanism with sensitivity 1 and scale σ costs ρ = 1/(2σ²).
        scale = (1.0 / (2.0 * rho)) ** 0.5
        meas = dp.c.make_zCDP_to_approxDP(
            dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale)
        )
        profile = meas.map(1.0)
        print(f"({rho!r}, {delta!r}, {profile.epsilon(delta)!r}),")
