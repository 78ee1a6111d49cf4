// Thin Python face of the core: arrays in, arrays out, the GIL released around every per-atom loop.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <stdexcept>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "basis.hpp"
#include "etn.hpp"
#include "site_kernel.hpp"
#include "structure.hpp"
#include "linear_system.hpp"
#include "training_set.hpp"

namespace py = pybind11;
using namespace mtpfit;

namespace {

using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
using IntArray = py::array_t<int, py::array::c_style | py::array::forcecast>;

void require_size(const py::array& a, py::ssize_t n, const char* name) {
    if (a.size() != n)
        throw std::invalid_argument(std::string(name) + " has " + std::to_string(a.size()) + " values, expected " +
                                    std::to_string(n));
}

template <class Model>
const double* checked_theta(const Model& model, const DoubleArray& theta) {
    require_size(theta, model.n_params(), "theta");
    const double* p = theta.data();
    for (py::ssize_t k = 0; k < theta.size(); ++k)
        if (!std::isfinite(p[k])) throw std::invalid_argument("theta[" + std::to_string(k) + "] is not finite");
    return p;
}

template <class T>
std::vector<T> to_vector(const py::array_t<T, py::array::c_style | py::array::forcecast>& a) {
    return std::vector<T>(a.data(), a.data() + a.size());
}

int resolve_threads(int n_threads) {
#ifdef _OPENMP
    return n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    return 1;
#endif
}

// The bindings that take either model, the MTP (Basis) or the ETN (EtnModel): the single-structure evaluations and the
// TrainingSet passes. `arg` names the model's argument.
template <class Model>
void bind_model(py::module_& m, py::class_<TrainingSet>& ts, const char* arg) {
    m.def(
        "evaluate",
        [](const Model& model, DoubleArray theta, Structure& s, int n_threads, bool virials) -> py::tuple {
            const double* th = checked_theta(model, theta);
            py::array_t<double> site(s.n_atoms), forces({s.n_atoms, 3}), stress({3, 3});
            py::array_t<double> atom_virials(virials ? std::vector<py::ssize_t>{s.n_atoms, 3, 3}
                                                     : std::vector<py::ssize_t>{0});
            double *ps = site.mutable_data(), *pf = forces.mutable_data(), *pst = stress.mutable_data();
            double* pv = virials ? atom_virials.mutable_data() : nullptr;
            const int threads = resolve_threads(n_threads);
            s.index_incoming();  // once per structure, under the GIL: a structure may be shared across threads
            {
                py::gil_scoped_release release;
                evaluate_structure_parallel(model, th, s, ps, pf, pst, pv, threads);
            }
            if (virials) return py::make_tuple(site, forces, stress, atom_virials);
            return py::make_tuple(site, forces, stress);
        },
        py::arg(arg), py::arg("theta"), py::arg("structure"), py::arg("n_threads") = 1,
        py::arg("virials") = false,
        "Site energies (N,), forces (N, 3) and PlusStress (3, 3) of one configuration on n_threads OpenMP threads "
        "(0: all), identical bit for bit for every thread count; with virials=True also the per-atom virials "
        "(N, 3, 3), eV, each pair's term split half to each of its atoms, summing to the PlusStress.");

    m.def(
        "vjp",
        [](const Model& model, DoubleArray theta, const Structure& s, double e, py::object phi, py::object sigma) {
            const double* th = checked_theta(model, theta);
            DoubleArray phi_a, sigma_a;
            const double *pphi = nullptr, *psig = nullptr;
            if (!phi.is_none()) {
                phi_a = phi.cast<DoubleArray>();
                require_size(phi_a, 3 * s.n_atoms, "phi");
                pphi = phi_a.data();
            }
            if (!sigma.is_none()) {
                sigma_a = sigma.cast<DoubleArray>();
                require_size(sigma_a, 9, "sigma");
                psig = sigma_a.data();
            }
            py::array_t<double> grad(model.n_params());
            double* pg = grad.mutable_data();
            std::fill(pg, pg + model.n_params(), 0.0);
            {
                py::gil_scoped_release release;
                typename KernelOf<Model>::type kernel(model, th);
                structure_vjp(kernel, s, e, pphi, psig, pg);
            }
            return grad;
        },
        py::arg(arg), py::arg("theta"), py::arg("structure"), py::arg("e"), py::arg("phi") = py::none(),
        py::arg("sigma") = py::none(),
        "e·dE/dθ + Σ φ_i·dF_i/dθ + Σ σ_ab dS_ab/dθ for one configuration, shape (n_params,).");

    ts.def(
            "loss_and_gradient",
            [](const TrainingSet& ts, const Model& model, DoubleArray theta, int n_threads, py::object subset) {
                const double* th = checked_theta(model, theta);
                std::vector<int> indices;
                if (!subset.is_none()) indices = to_vector<int>(subset.cast<IntArray>());
                const std::vector<int>* chosen = subset.is_none() ? nullptr : &indices;
                const py::ssize_t terms = chosen ? static_cast<py::ssize_t>(indices.size()) : ts.size();
                py::array_t<double> grad(model.n_params()), per_config(terms);
                double *pg = grad.mutable_data(), *pc = per_config.mutable_data();
                double loss;
                {
                    py::gil_scoped_release release;
                    loss = ts.loss_and_gradient(model, th, pg, pc, resolve_threads(n_threads), chosen);
                }
                return py::make_tuple(loss, grad, per_config);
            },
            py::arg(arg), py::arg("theta"), py::arg("n_threads") = 0, py::arg("subset") = py::none(),
            "Weighted loss, its gradient (n_params,) and each configuration's term, over every configuration or "
            "over the indices in `subset` (a mini-batch).")
        .def(
            "predict",
            [](const TrainingSet& ts, const Model& model, DoubleArray theta, int n_threads) {
                const double* th = checked_theta(model, theta);
                py::array_t<double> e(ts.size()), f({static_cast<py::ssize_t>(ts.n_atoms()), py::ssize_t(3)}),
                    s({static_cast<py::ssize_t>(ts.size()), py::ssize_t(3), py::ssize_t(3)});
                double *pe = e.mutable_data(), *pf = f.mutable_data(), *ps = s.mutable_data();
                {
                    py::gil_scoped_release release;
                    ts.predict(model, th, pe, pf, ps, resolve_threads(n_threads));
                }
                return py::make_tuple(e, f, s);
            },
            py::arg(arg), py::arg("theta"), py::arg("n_threads") = 0,
            "Energies (K,), forces (n_atoms, 3) and PlusStress (K, 3, 3).")
        .def(
            "energy_gradients",
            [](const TrainingSet& ts, const Model& model, DoubleArray theta, int n_threads) {
                const double* th = checked_theta(model, theta);
                py::array_t<double> out({static_cast<py::ssize_t>(ts.size()), static_cast<py::ssize_t>(model.n_params())});
                double* po = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    ts.energy_gradients(model, th, po, resolve_threads(n_threads));
                }
                return out;
            },
            py::arg(arg), py::arg("theta"), py::arg("n_threads") = 0, "dE_k/dθ, shape (K, n_params).")
        .def(
            "residual_jacobian",
            [](const TrainingSet& ts, const Model& model, DoubleArray theta, int k) {
                const double* th = checked_theta(model, theta);
                if (k < 0 || k >= ts.size()) throw py::index_error("configuration " + std::to_string(k) +
                                                                   " out of range");
                const py::ssize_t m = ts.n_residuals(k);
                py::array_t<double> r(m), w(m), J({m, static_cast<py::ssize_t>(model.n_params())});
                double *pr = r.mutable_data(), *pw = w.mutable_data(), *pJ = J.mutable_data();
                {
                    py::gil_scoped_release release;
                    ts.residual_jacobian(model, th, k, pr, pw, pJ);
                }
                return py::make_tuple(r, w, J);
            },
            py::arg(arg), py::arg("theta"), py::arg("k"),
            "Configuration k's residuals r (energy, 3N forces, 9 PlusStress), weights w and Jacobian dr/dθ.")
        .def(
            "residuals",
            [](const TrainingSet& ts, const Model& model, DoubleArray theta, int n_threads) {
                const double* th = checked_theta(model, theta);
                const py::ssize_t m = ts.n_residuals_total();
                py::array_t<double> r(m), w(m);
                double *pr = r.mutable_data(), *pw = w.mutable_data();
                {
                    py::gil_scoped_release release;
                    ts.residuals(model, th, pr, pw, resolve_threads(n_threads));
                }
                return py::make_tuple(r, w);
            },
            py::arg(arg), py::arg("theta"), py::arg("n_threads") = 0,
            "Every residual r = prediction − label and its weight, configurations in order (energy, 3N forces, "
            "9 PlusStress each).")
        .def(
            "residual_vjp",
            [](const TrainingSet& ts, const Model& model, DoubleArray theta, DoubleArray c, int n_threads) {
                const double* th = checked_theta(model, theta);
                require_size(c, ts.n_residuals_total(), "c");
                py::array_t<double> g(model.n_params());
                double* pg = g.mutable_data();
                const double* pc = c.data();
                {
                    py::gil_scoped_release release;
                    ts.residual_vjp(model, th, pc, pg, resolve_threads(n_threads));
                }
                return g;
            },
            py::arg(arg), py::arg("theta"), py::arg("c"), py::arg("n_threads") = 0,
            "Jᵀc for a cotangent c over every residual, shape (n_params,).")
        .def(
            "gauss_newton",
            [](const TrainingSet& ts, const Model& model, DoubleArray theta, int n_threads, int sketch,
               std::uint64_t seed) {
                const double* th = checked_theta(model, theta);
                if (sketch < 0) throw std::invalid_argument("sketch must be >= 0");
                const py::ssize_t np = model.n_params();
                py::array_t<double> H({np, np}), g(np);
                double *pH = H.mutable_data(), *pg = g.mutable_data();
                double loss;
                {
                    py::gil_scoped_release release;
                    loss = ts.gauss_newton(model, th, pH, pg, resolve_threads(n_threads), sketch, seed);
                }
                return py::make_tuple(loss, H, g);
            },
            py::arg(arg), py::arg("theta"), py::arg("n_threads") = 0, py::arg("sketch") = 0,
            py::arg("seed") = 0,
            "Loss Σ w r², JᵀWJ (n_params, n_params) and JᵀWr (n_params,) over every configuration, J not stored; "
            "with sketch > 0, JᵀWJ is a random sketch of that many rows per configuration.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "mtpfit C++ core: Moment Tensor Potential energies, forces, stresses and parameter gradients";

    m.def("max_threads", [] { return resolve_threads(0); }, "Number of OpenMP threads used by default.");

    py::class_<Basis>(m, "Basis")
        .def(py::init([](int species_count, int radial_funcs_count, int radial_basis_size, double min_dist,
                         double max_dist, double scaling, int moments_count, IntArray basic, IntArray products,
                         IntArray mapping) {
                 if (basic.ndim() != 2 || basic.shape(1) != 4) throw std::invalid_argument("basic must be (n, 4)");
                 if (products.size() % 4 != 0) throw std::invalid_argument("products must be (n, 4)");
                 std::vector<BasicMoment> b;
                 for (py::ssize_t k = 0; k < basic.shape(0); ++k)
                     b.push_back({basic.at(k, 0), basic.at(k, 1), basic.at(k, 2), basic.at(k, 3)});
                 std::vector<MomentProduct> t;
                 const int* pp = products.data();
                 for (py::ssize_t k = 0; k < products.size() / 4; ++k)
                     t.push_back({pp[4 * k], pp[4 * k + 1], pp[4 * k + 2], pp[4 * k + 3]});
                 return Basis(species_count, radial_funcs_count, radial_basis_size, min_dist, max_dist, scaling,
                              moments_count, std::move(b), std::move(t), to_vector<int>(mapping));
             }),
             py::arg("species_count"), py::arg("radial_funcs_count"), py::arg("radial_basis_size"),
             py::arg("min_dist"), py::arg("max_dist"), py::arg("scaling"), py::arg("moments_count"),
             py::arg("basic"), py::arg("products"), py::arg("mapping"))
        .def_property_readonly("n_params", &Basis::n_params)
        .def_property_readonly("n_radial", &Basis::n_radial)
        .def_readonly("max_dist", &Basis::max_dist);

    py::class_<EtnModel>(m, "EtnModel")
        .def(py::init([](int species_count, int radial_basis_size, int max_l, int channels, int copies,
                         std::vector<int> ranks, double min_dist, double max_dist) {
                 EtnShape shape;
                 shape.species_count = species_count;
                 shape.radial_basis_size = radial_basis_size;
                 shape.max_l = max_l;
                 shape.channels = channels;
                 shape.copies = copies;
                 shape.ranks = std::move(ranks);
                 shape.min_dist = min_dist;
                 shape.max_dist = max_dist;
                 return EtnModel(std::move(shape));
             }),
             py::arg("species_count"), py::arg("radial_basis_size"), py::arg("max_l"), py::arg("channels"),
             py::arg("copies"), py::arg("ranks"), py::arg("min_dist"), py::arg("max_dist"),
             "The ETN tensor network of a shape (cpp/etn.hpp); its Gaunt tables are built here, once. Raises "
             "ValueError naming the offending hyper-parameter.")
        .def_property_readonly("n_params", &EtnModel::n_params)
        .def_property_readonly("n_radial", &EtnModel::n_radial)
        .def_property_readonly("species_offset", &EtnModel::species_offset)
        .def_property_readonly("cores_offset", &EtnModel::cores_offset)
        .def_property_readonly("n_features", &EtnModel::n_features)
        .def_property_readonly("species_count", &EtnModel::species_count)
        .def_property_readonly("radial_basis_size", &EtnModel::radial_basis_size)
        .def_property_readonly("max_l", &EtnModel::max_l)
        .def_property_readonly("channels", &EtnModel::channels)
        .def_property_readonly("copies", &EtnModel::copies)
        .def_property_readonly("ranks", [](const EtnModel& e) { return e.shape().ranks; })
        .def_property_readonly("min_dist", &EtnModel::min_dist)
        .def_property_readonly("max_dist", &EtnModel::max_dist)
        .def(
            "core_offset",
            [](const EtnModel& e, int k) {
                if (k < 1 || k > e.copies())
                    throw py::index_error("core " + std::to_string(k) + " out of range 1…" + std::to_string(e.copies()));
                return e.core_offset(k);
            },
            py::arg("k"), "Offset in θ of core k = 1 … d (1: A, 2 … d−1: G_k, d: B).")
        .def(
            "core_size",
            [](const EtnModel& e, int k) {
                if (k < 1 || k > e.copies())
                    throw py::index_error("core " + std::to_string(k) + " out of range 1…" + std::to_string(e.copies()));
                return e.core_size(k);
            },
            py::arg("k"), "Number of θ values of core k = 1 … d.")
        .def_property_readonly(
            "paths",
            [](const EtnModel& e) {
                py::list out;
                for (const EtnPath& p : e.paths()) out.append(py::make_tuple(p.l1, p.l2, p.l3));
                return out;
            },
            "The coupling paths (l1, l2, l3) of the interior cores, in θ order.")
        .def(
            "gaunt",
            [](const EtnModel& e, int p) {
                if (p < 0 || p >= static_cast<int>(e.paths().size()))
                    throw py::index_error("path " + std::to_string(p) + " out of range");
                const auto& entries = e.paths()[p].entries;
                py::array_t<double> out({static_cast<py::ssize_t>(entries.size()), py::ssize_t(4)});
                double* o = out.mutable_data();
                for (std::size_t q = 0; q < entries.size(); ++q) {
                    o[4 * q] = entries[q].m1;
                    o[4 * q + 1] = entries[q].m2;
                    o[4 * q + 2] = entries[q].m3;
                    o[4 * q + 3] = entries[q].value;
                }
                return out;
            },
            py::arg("p"),
            "The non-zero real Gaunt coefficients of path p as rows (m1 + l1, m2 + l2, m3 + l3, value).")
        .def(
            "harmonics",
            [](const EtnModel& e, DoubleArray units) {
                if (units.ndim() != 2 || units.shape(1) != 3) throw std::invalid_argument("units must be (n, 3)");
                const py::ssize_t n = units.shape(0), nh = e.n_harmonics();
                py::array_t<double> Y({n, nh});
                for (py::ssize_t k = 0; k < n; ++k)
                    e.real_harmonics(units.at(k, 0), units.at(k, 1), units.at(k, 2), Y.mutable_data() + k * nh,
                                     nullptr);
                return Y;
            },
            py::arg("units"),
            "Real orthonormal spherical harmonics Y_lm of unit vectors (n, 3), shape (n, (L+1)²), column l² + m + l.");

    py::class_<Structure>(m, "Structure")
        .def(py::init([](IntArray types, IntArray offsets, IntArray neighbors, DoubleArray vectors,
                         int species_count, py::object shifts) {
                 Structure s(to_vector<int>(types), to_vector<int>(offsets), to_vector<int>(neighbors),
                             to_vector<double>(vectors), species_count);
                 if (!shifts.is_none()) s.set_shifts(to_vector<int>(shifts.cast<IntArray>()));
                 return s;
             }),
             py::arg("types"), py::arg("offsets"), py::arg("neighbors"), py::arg("vectors"),
             py::arg("species_count"), py::arg("shifts") = py::none(),
             "The neighbour geometry of one configuration; `shifts` (n_pairs, 3), the integer cell shift of each "
             "pair, lets set_positions() follow moving atoms.")
        .def_readonly("n_atoms", &Structure::n_atoms)
        .def_property_readonly("n_pairs", &Structure::n_pairs)
        .def_property_readonly("has_shifts", &Structure::has_shifts)
        .def(
            "set_positions",
            [](Structure& s, DoubleArray positions, DoubleArray cell, int n_threads) -> py::tuple {
                require_size(positions, 3 * static_cast<py::ssize_t>(s.n_atoms), "positions");
                require_size(cell, 9, "cell");
                int p = -1;
                // under the GIL: an evaluation of the same structure on another Python thread must not see half
                const double d = s.set_positions(positions.data(), cell.data(), &p, resolve_threads(n_threads));
                if (p < 0) return py::make_tuple(d, -1, -1);
                const int i = static_cast<int>(std::upper_bound(s.offsets.begin(), s.offsets.end(), p) -
                                               s.offsets.begin()) - 1;
                return py::make_tuple(d, i, s.neighbors[p]);
            },
            py::arg("positions"), py::arg("cell"), py::arg("n_threads") = 1,
            "Recomputes the neighbour vectors r_ij = x_j − x_i + S_ij·cell from positions (N, 3) and cell (3, 3) "
            "(Å) with the stored shifts, keeping the pairs; returns (shortest |r_ij|, i, j) of the closest pair "
            "(inf, -1, -1 without pairs); n_threads OpenMP threads (0: all).")
        .def(
            "within",
            [](const Structure& s, double cutoff, Structure& out, int n_threads) {
                if (&out == &s) throw std::invalid_argument("within(): out must be another structure");
                // under the GIL: an evaluation of `out` on another Python thread must not see half of it
                s.within(cutoff, out, resolve_threads(n_threads));
            },
            py::arg("cutoff"), py::arg("out"), py::arg("n_threads") = 1,
            "Fills out with the pairs closer than cutoff (Å), without shifts: what a Verlet list (built with a "
            "skin) holds inside the potential's cutoff; out's memory is reused.");

    m.def(
        "site_linear_rows",
        [](const Basis& basis, DoubleArray theta, const Structure& s, int n_threads) {
            const double* th = checked_theta(basis, theta);
            const int width = basis.species_count + static_cast<int>(basis.mapping.size());
            py::array_t<double> rows({s.n_atoms, width});
            double* out = rows.mutable_data();
            const int threads = resolve_threads(n_threads);
            {
                py::gil_scoped_release release;
                site_linear_rows(basis, th, s, out, threads);
            }
            return rows;
        },
        py::arg("basis"), py::arg("theta"), py::arg("structure"), py::arg("n_threads") = 1,
        "Each atom's ∂V_i/∂(ξ, c): the one-hot of its species, then its basis functions B_α(i), shape "
        "(N, S + M).");

    m.def(
        "force_vjp",
        [](const Basis& basis, DoubleArray theta, const Structure& s, DoubleArray a) {
            const double* th = checked_theta(basis, theta);
            require_size(a, 3 * s.n_atoms, "a");
            py::array_t<double> grad_theta(basis.n_params()), grad_x({s.n_atoms, 3});
            double *pt = grad_theta.mutable_data(), *px = grad_x.mutable_data();
            std::fill(pt, pt + basis.n_params(), 0.0);
            {
                py::gil_scoped_release release;
                SiteKernel kernel(basis, th);
                structure_force_vjp(kernel, s, a.data(), pt, px);
            }
            return py::make_tuple(grad_theta, grad_x);
        },
        py::arg("basis"), py::arg("theta"), py::arg("structure"), py::arg("a"),
        "For a cotangent a (N, 3) on the forces: (a·dF/dθ of shape (n_params,), a·dF/dX of shape (N, 3)). "
        "dF/dX = −∇²E is symmetric, so the second is the exact Hessian–vector product −∇²E·a.");

    py::class_<TrainingSet> ts(m, "TrainingSet");
    ts.def(py::init<>())
        .def(
            "add",
            [](TrainingSet& ts, Structure s, double energy, double energy_weight, DoubleArray forces,
               DoubleArray force_weights, DoubleArray stress, DoubleArray stress_weights, long id) {
                Labels y;
                y.id = id;
                y.energy = energy;
                y.energy_weight = energy_weight;
                y.forces = to_vector<double>(forces);
                y.force_weights = to_vector<double>(force_weights);
                require_size(stress, 9, "stress");
                require_size(stress_weights, 9, "stress_weights");
                std::copy(stress.data(), stress.data() + 9, y.stress.begin());
                std::copy(stress_weights.data(), stress_weights.data() + 9, y.stress_weights.begin());
                ts.add(std::move(s), std::move(y));
            },
            py::arg("structure"), py::arg("energy"), py::arg("energy_weight"), py::arg("forces"),
            py::arg("force_weights"), py::arg("stress"), py::arg("stress_weights"), py::arg("id") = -1,
            "Adds a configuration; `id` is its index in the whole dataset (seeds its sketch rows), default its "
            "position here.")
        .def("__len__", &TrainingSet::size)
        .def_property_readonly("n_atoms", &TrainingSet::n_atoms)
        .def_property_readonly("n_residuals_total", &TrainingSet::n_residuals_total)
        .def(
            "linear_system",
            [](const TrainingSet& ts, const Basis& basis, DoubleArray theta, int n_threads,
               const std::string& directions) {
                const double* th = checked_theta(basis, theta);
                TangentDirections mode = TangentDirections::automatic;
                if (directions == "neighbours")
                    mode = TangentDirections::neighbours;
                else if (directions == "atoms")
                    mode = TangentDirections::atoms;
                else if (directions != "auto")
                    throw py::value_error("directions must be 'auto', 'neighbours' or 'atoms', not '" + directions + "'");
                const py::ssize_t n = basis.species_count + static_cast<py::ssize_t>(basis.mapping.size()) + 1;
                py::array_t<double> R({n, n});
                double* pR = R.mutable_data();
                {
                    py::gil_scoped_release release;
                    ts.linear_system(basis, th, pR, resolve_threads(n_threads), mode);
                }
                return R;
            },
            py::arg("basis"), py::arg("theta"), py::arg("n_threads") = 0, py::arg("directions") = "auto",
            "R factor (S + M + 1, S + M + 1) of the √w-scaled linear design of the species and moment coefficients "
            "with the labels as last column, at the radial coefficients of theta; one pass, design not stored. "
            "directions: the forward-mode pass along each atom's neighbour displacements ('neighbours'), along the "
            "displacements of the distinct atoms among them and 6 strains ('atoms': fewer in small periodic cells), "
            "or the cheaper of the two by a cost model ('auto'); the same system to round-off.");

    bind_model<Basis>(m, ts, "basis");
    bind_model<EtnModel>(m, ts, "model");
}
