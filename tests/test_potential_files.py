""".mtp files: exact round trips, templates, and clear errors on malformed input."""
import numpy as np
import pytest

from conftest import DATA
from mtpfit import MTP
from mtpfit.io import FormatError
from mtpfit.potential import LEVELS

POT = DATA / "mlip2" / "level16_multi" / "pot.mtp"


def test_write_read_round_trip_is_exact(tmp_path):
    mtp = MTP.read(POT)
    mtp.write(tmp_path / "a.mtp")
    again = MTP.read(tmp_path / "a.mtp")
    assert np.array_equal(again.theta, mtp.theta)
    assert again.basis.scaling == mtp.basis.scaling
    for name in ("alpha_index_basic", "alpha_index_times", "alpha_moment_mapping"):
        assert np.array_equal(getattr(again.basis, name), getattr(mtp.basis, name))
    again.write(tmp_path / "b.mtp")
    assert (tmp_path / "a.mtp").read_text() == (tmp_path / "b.mtp").read_text()


def test_random_theta_round_trip_is_exact(tmp_path):
    mtp = MTP.from_level(10, species=["Nb", "Mo", "Ta"], min_dist=1.9, max_dist=5.1)
    theta = np.random.default_rng(3).normal(size=mtp.n_params) * 10.0 ** np.random.default_rng(4).integers(-12, 12, mtp.n_params)
    mtp.copy(theta).write(tmp_path / "r.mtp")
    assert np.array_equal(MTP.read(tmp_path / "r.mtp").theta, theta)


@pytest.mark.parametrize("level, n_params", [(6, 152), (8, 156), (10, 235), (12, 248), (16, 383), (20, 651)])
def test_parameter_counts_match_the_reference_code(level, n_params):
    """3 species, R = 8: the counts BENCHMARKS.md lists for the reference code."""
    mtp = MTP.from_level(level, species=[0, 1, 2])
    assert mtp.n_params == n_params
    assert mtp.basis.level == level
    b = mtp.blocks
    assert b["radial"].stop == b["species"].start and b["moment"].stop == n_params


def test_mlip_default_initial_parameters():
    mtp = MTP.from_level(8, species=[0, 1])
    radial = mtp.theta[mtp.blocks["radial"]].reshape(4, 2, 8)
    assert np.all(radial[:, [0, 1], [0, 1]] == 1e-3)
    assert np.sum(radial == 1e-6) == radial.size - 8
    assert np.all(mtp.theta[mtp.blocks["species"].start:] == 1e-3)


def test_untrained_template_with_comments_and_crlf(tmp_path):
    from importlib import resources

    text = (resources.files("mtpfit.potential") / "templates" / "08.almtp").read_text()
    text = text.replace("species_count = 1", "species_count = 3 <<< number of components")
    (tmp_path / "u.mtp").write_bytes((text + "\n# MLIP-3 trailer\n").replace("\n", "\r\n").encode())
    mtp = MTP.read(tmp_path / "u.mtp")
    assert mtp.basis.species_count == 3 and mtp.n_params == 156
    assert np.array_equal(mtp.theta, mtp.init_params())


def _broken(tmp_path, old, new):
    text = POT.read_text()
    assert old in text
    path = tmp_path / "broken.mtp"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, message", [
    ("species_count = 3", "species_count = three", "broken.mtp:5"),
    ("alpha_index_basic_count = 130", "alpha_index_basic_count = 129", "alpha_index_basic_count"),
    ("alpha_scalar_moments = 92", "alpha_scalar_moments = 93", "alpha_scalar_moments"),
    ("\tmax_dist = 5.000000000000000e+00\n", "", "missing field 'max_dist'"),
    ("moment_coeffs = {", "moment_coeffs = {nan, ", "non-finite"),
    ("\t\t2-2\n", "\t\t2-X\n", "broken.mtp"),
])
def test_malformed_files_name_file_and_line(tmp_path, old, new, message):
    with pytest.raises(FormatError, match=message.replace("(", r"\(")):
        MTP.read(_broken(tmp_path, old, new))


def test_missing_radial_block_and_bad_index(tmp_path):
    text = POT.read_text()
    start = text.index("\t\t2-2")
    end = text.index("alpha_moments_count")
    (tmp_path / "m.mtp").write_text(text[:start] + text[end:])
    with pytest.raises(FormatError, match="2-2"):
        MTP.read(tmp_path / "m.mtp")
    with pytest.raises(FormatError, match="out of range"):
        MTP.read(_broken(tmp_path, "alpha_moment_mapping = {0,", "alpha_moment_mapping = {9999,"))


def test_unknown_level_and_wrong_theta():
    with pytest.raises(ValueError, match="no template for level 7"):
        MTP.from_level(7)
    mtp = MTP.from_level(6)
    with pytest.raises(ValueError, match="shape"):
        mtp.copy(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        mtp.copy(np.full(mtp.n_params, np.nan))
    assert set(LEVELS) >= {6, 8, 10, 16, 20, 24, 28}
