"""Issue 6, acceptance 1: JᵀWJ, JᵀWr and H·v against dense finite-difference constructions (prints the largest
relative errors; the asserting version is tests/test_second_order.py). Run from the repository root."""
import sys; sys.path.insert(0, 'tests')
import numpy as np
from conftest import DATA
from mtpfit.io import read_configurations
from mtpfit.objective import Loss, Objective
from mtpfit.potential import MTP
from test_second_order import dense_residual_jacobian, relative
frames = read_configurations(DATA / "mlip2" / "level08_multi" / "train100.cfg")[:5]
for level in (6, 8):
    mtp = MTP.from_level(level, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    o = Objective(mtp, frames, Loss(), n_threads=1); o.penalty_coefficient = 1e-3
    x = mtp.init_params(0.1, 3)
    L, JtWJ, JtWr = o.gauss_newton(x); r, w = o.residuals(x); J = dense_residual_jacobian(o, x)
    h = 1e-5
    H = np.array([(o.jac(x + h * e) - o.jac(x - h * e)) / (2 * h) for e in np.eye(len(x))]).T; H = 0.5 * (H + H.T)
    v = np.random.default_rng(0).normal(size=len(x))
    print(f"level {level}: P={len(x)} residuals={len(r)}  JtWJ {relative(JtWJ, J.T @ (w[:, None] * J)):.2e}  "
          f"JtWr {relative(JtWr, J.T @ (w * r)):.2e}  Hv {relative(o.hessp(x, v), H @ v):.2e}")
