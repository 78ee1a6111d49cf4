"""Fisher-information and Hessian-spectrum analyses."""
import numpy as np
import pytest

from conftest import DATA
from mtpfit.analysis import analyse_fisher, hessian_spectrum
from mtpfit.analysis.hessian import adam_preconditioner, dense_preconditioner, lanczos, soap_preconditioner
from mtpfit.cli import main
from mtpfit.io import read_configurations
from mtpfit.objective import Loss, Objective
from mtpfit.optim import make_optimizer
from mtpfit.optim.blocks import ParameterBlocks
from mtpfit.potential import MTP

TRAIN = DATA / "mlip2" / "level08_multi" / "train100.cfg"


@pytest.fixture(scope="module")
def objective():
    mtp = MTP.from_level(6, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    return Objective(mtp, read_configurations(TRAIN)[:5], Loss(), n_threads=1)


def test_fisher_analysis_reads_the_gauss_newton_matrix(objective):
    x = objective.mtp.init_params(0.1, 2)
    a = analyse_fisher(objective, x)
    F = 2 * objective.gauss_newton(x)[1]
    assert np.allclose(a.fisher, F, rtol=1e-12, atol=0)
    assert np.all(np.diff(a.eigenvalues) <= 0)
    assert a.eigenvalues.sum() == pytest.approx(np.trace(F), rel=1e-9)
    assert sum(a.block_trace_fraction().values()) == pytest.approx(1.0, rel=1e-12)
    assert sum(a.block_share_of_stiff_directions().values()) == pytest.approx(1.0, rel=1e-12)
    assert 0 < a.effective_parameters() < a.n_params and 1 <= a.participation_ratio() <= a.n_params
    assert a.stiff_count(6.0) <= a.n_params and a.decades() > 6
    s = objective.mtp.blocks["moment"]
    assert np.allclose(a.basis_function_sensitivity(), x[s] ** 2 * np.diag(F)[s])
    assert len(a.levels) == s.stop - s.start and a.levels.max() == objective.mtp.basis.level


def test_lanczos_quadrature_of_a_known_spectrum():
    values = np.logspace(-3, 4, 50)
    nodes, weights = lanczos(lambda v: values * v, np.ones(50), 50)
    assert np.allclose(np.sort(nodes), values, rtol=1e-8)
    assert weights.sum() == pytest.approx(1.0)
    nodes, _ = lanczos(lambda v: values * v, np.ones(50), 25)
    assert nodes.max() == pytest.approx(values.max(), rel=1e-10)


def test_hessian_extremes_match_the_dense_hessian(objective):
    x = objective.mtp.init_params(0.1, 4)
    h = 1e-5
    H = np.array([(objective.jac(x + h * e) - objective.jac(x - h * e)) / (2 * h) for e in np.eye(len(x))])
    exact = np.linalg.eigvalsh(0.5 * (H + H.T))
    spectrum = hessian_spectrum(objective, x, probes=2, steps=30)
    assert spectrum.largest[0] == pytest.approx(exact[-1], rel=1e-5)
    assert spectrum.smallest[0] == pytest.approx(exact[0], rel=1e-3, abs=1e-6 * exact[-1])
    assert np.allclose(spectrum.weights.sum(axis=1), 1.0)



def test_dense_preconditioner_square_root():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(20, 20))
    P = A @ A.T + 0.1 * np.eye(20)
    root, v = dense_preconditioner(P), rng.normal(size=20)
    assert np.allclose(root(root(v)), P @ v, rtol=1e-10)


def test_preconditioners_of_trained_optimizer_states(objective):
    x = objective.mtp.init_params(0.1, 4)
    blocks = ParameterBlocks.of(objective.mtp)
    rng = np.random.default_rng(0)
    v = rng.normal(size=len(x))
    for name in ("adam", "soap"):
        opt = make_optimizer(name)
        state, params = opt.init(x, blocks), x.copy()
        for _ in range(3):
            params, state = opt.step(objective.jac(params), state, params)
        if name == "adam":
            root = adam_preconditioner(state)
            s = state["0"] if "0" in state else state
            inner = [d for d in _dicts(s) if {"m", "v", "count"} <= set(d)][0]
            P = 1 / (np.sqrt(inner["v"] / (1 - 0.999 ** inner["count"])) + 1e-8)
            assert np.allclose(root(root(v)), P * v, rtol=1e-12)
        else:
            root = soap_preconditioner(state)
            once, twice = root(v), root(root(v))
            # symmetric positive semi-definite: vᵀP v = ‖P^{1/2} v‖² ≥ 0, and P^{1/2} is symmetric
            w = rng.normal(size=len(x))
            assert v @ twice == pytest.approx(once @ once, rel=1e-10) and once @ once > 0
            assert w @ root(v) == pytest.approx(v @ root(w), rel=1e-9)
    with pytest.raises(ValueError, match="no SOAP"):
        soap_preconditioner({"count": 1})


def _dicts(state):
    if isinstance(state, dict):
        yield state
        for value in state.values():
            yield from _dicts(value)


def test_analyse_commands_write_tables_and_plots(tmp_path):
    out = tmp_path / "fim"
    assert main(["analyse", "fim", "--train", str(TRAIN), "--levels", "6", "--max-iter", "3", "--threads", "1",
                 "--output", str(out)]) == 0
    assert "| 6 |" in (out / "fisher.md").read_text()
    assert all((out / f).stat().st_size > 1000 for f in ("fisher_spectra.png", "fisher_blocks.png",
                                                          "fisher_basis_functions.png"))
    out = tmp_path / "hessian"
    assert main(["analyse", "hessian", "--train", str(TRAIN), "--level", "6", "--optimizers", "adam", "BFGS",
                 "--epochs", "1", "--max-iter", "3", "--steps", "8", "--probes", "1", "--threads", "1",
                 "--output", str(out)]) == 0
    table = (out / "hessian.md").read_text()
    assert "Adam second moment" in table and "BFGS inverse Hessian" in table
    assert (out / "hessian_density.png").stat().st_size > 1000


def test_pruning_drops_exactly_the_chosen_basis_functions(objective):
    from mtpfit.analysis import pareto_front, prune_basis_functions

    mtp = objective.mtp
    x = mtp.init_params(0.1, 1)
    small, y = prune_basis_functions(mtp, x, [0, 2])
    moment = mtp.blocks["moment"]
    assert small.n_params == mtp.n_params - 2
    assert np.array_equal(small.basis.alpha_moment_mapping, np.delete(mtp.basis.alpha_moment_mapping, [0, 2]))
    assert np.array_equal(y, np.delete(x, [moment.start, moment.start + 2]))
    # the pruned potential equals the full one with those coefficients set to zero
    zeroed = x.copy()
    zeroed[[moment.start, moment.start + 2]] = 0.0
    config = objective.dataset[0]
    assert small.evaluate(config).energy == pytest.approx(mtp.copy(zeroed).evaluate(config).energy, rel=1e-12)
    with pytest.raises(ValueError, match="every basis function"):
        prune_basis_functions(mtp, x, np.arange(moment.stop - moment.start))
    assert pareto_front([(3, 1.0), (1, 2.0), (2, 0.5), (4, 0.4), (5, 0.6)]) == [1, 2, 3]


def test_design_command(tmp_path):
    out = tmp_path / "design"
    assert main(["analyse", "design", "--train", str(TRAIN), "--levels", "6", "--optimizer", "L-BFGS-B",
                 "--max-iter", "5", "--refit-iter", "2", "--max-prunes", "1", "--threads", "1",
                 "--output", str(out)]) == 0
    rows = (out / "design.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("level,prune_step,n_params")
    assert (out / "design_front.png").stat().st_size > 1000


def test_studies_resume_from_per_level_checkpoints(tmp_path, capsys):
    out = tmp_path / "hessian"
    def args(levels=("6",), epochs="1"):
        return ["analyse", "hessian", "--train", str(TRAIN), "--levels", *levels, "--optimizers", "adam",
                "--epochs", epochs, "--steps", "6", "--probes", "1", "--threads", "1", "--output", str(out)]
    assert main(args()) == 0
    table = (out / "hessian.csv").read_text()
    capsys.readouterr()
    # an added level is computed, the finished one is read back: the table keeps its level-6 rows verbatim
    assert main(args(("6", "8"))) == 0
    printed = capsys.readouterr().out
    assert "hessian_level_06: reusing" in printed and "hessian_level_08: reusing" not in printed
    rows = (out / "hessian.csv").read_text().splitlines()
    assert rows[:len(table.splitlines())] == table.splitlines()
    assert any(r.startswith("8,") for r in rows)
    # other settings do not reuse the checkpoint
    assert main(args(epochs="2")) == 0
    assert "reusing" not in capsys.readouterr().out
