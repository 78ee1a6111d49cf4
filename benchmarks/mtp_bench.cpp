// mtp_bench: times the mtpfit core without Python.
//
//   mtp_bench POTENTIAL.mtp DATA.cfg [--frames N] [--threads T] [--min-time S] [--json OUT.json]
//             [--etn SHAPE]... [--etn-only]
//
// Reads an .mtp file (trained or untrained: untrained gets the MLIP load defaults) and the first N
// configurations of a .cfg file, then reports per atom, for 1 … T OpenMP threads: neighbour-list
// construction (vesin), energy+forces+PlusStress over the set, and one loss+gradient pass with MLIP-2's
// default weights, and for the MTP variable projection's linear system (the R factor of the species and moment
// coefficients' weighted design, TrainingSet::linear_system); serially, the force vector–Jacobian product in
// positions and θ (one step of backpropagation through a relaxation). Each figure is the median of repeated runs,
// repeated until at least --min-time seconds and 5 runs have accumulated; the process CPU time of the same runs is
// reported beside it (its median), since on a shared machine the wall time of a single-threaded run grows with the
// load and its CPU time does not.
//
// --etn SHAPE (repeatable) adds an ETN-style model (cpp/etn.hpp) of that shape, timed on the same structures
// with the same passes (energy+forces+PlusStress, loss+gradient) beside the MTP. SHAPE is comma-separated
// key=value: max_l=L, channels=N_c, copies=d, ranks=r_1x…xr_{d−1} (required), radial_basis_size=R (default the
// MTP's); species count, min_dist and cutoff are the MTP's. Its θ is uniform in ±0.1 (seed 42), the optimizer
// study's initialisation. --etn-only skips the MTP's neighbour-list and force-VJP timings (its energy+forces and
// loss+gradient rows stay, for the side-by-side table).
#include <omp.h>
#include <vesin.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "basis.hpp"
#include "etn.hpp"
#include "structure.hpp"
#include "site_kernel.hpp"
#include "training_set.hpp"

using namespace mtpfit;

namespace {

std::vector<double> numbers_in(const std::string& text) {
    static const std::regex number(R"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)");
    std::vector<double> out;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), number); it != std::sregex_iterator(); ++it)
        out.push_back(std::stod(it->str()));
    return out;
}

std::string trim(const std::string& s) {
    const auto a = s.find_first_not_of(" \t\r");
    if (a == std::string::npos) return "";
    return s.substr(a, s.find_last_not_of(" \t\r") - a + 1);
}

struct Potential {
    Basis basis;
    std::vector<double> theta;
};

// The .mtp format of MTP_SPEC §9 (the Python reader, mtpfit.potential.mtp_file, is the validating one).
Potential read_mtp(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::map<std::string, std::string> field;
    std::vector<double> radial, scaling{1.0};
    std::string line;
    while (std::getline(in, line)) {
        line = trim(line.substr(0, line.find("<<<")));
        if (line.empty() || line[0] == '#') continue;
        const auto eq = line.find('=');
        if (eq != std::string::npos) {
            const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
            if (key == "scaling") scaling.push_back(std::stod(value));
            else field[key] = value;
        } else if (line[0] == '{') {
            for (double v : numbers_in(line)) radial.push_back(v);
        }
    }
    auto integer = [&](const char* key) {
        if (!field.count(key)) throw std::runtime_error(path + ": missing " + key);
        return std::stoi(field[key]);
    };
    auto quads = [&](const char* key) {
        std::vector<double> v = field.count(key) ? numbers_in(field[key]) : std::vector<double>{};
        if (v.size() % 4) throw std::runtime_error(path + ": " + key + " needs groups of 4");
        return v;
    };
    std::vector<BasicMoment> basic;
    const auto b = quads("alpha_index_basic");
    for (std::size_t k = 0; k < b.size(); k += 4)
        basic.push_back({int(b[k]), int(b[k + 1]), int(b[k + 2]), int(b[k + 3])});
    std::vector<MomentProduct> products;
    const auto t = quads("alpha_index_times");
    for (std::size_t k = 0; k < t.size(); k += 4)
        products.push_back({int(t[k]), int(t[k + 1]), int(t[k + 2]), int(t[k + 3])});
    std::vector<int> mapping;
    for (double v : numbers_in(field["alpha_moment_mapping"])) mapping.push_back(int(v));
    double s = 1.0;
    for (double v : scaling) s *= v;
    Basis basis(integer("species_count"), integer("radial_funcs_count"), integer("radial_basis_size"),
                std::stod(field["min_dist"]), std::stod(field["max_dist"]), s, integer("alpha_moments_count"),
                basic, products, mapping);
    std::vector<double> theta;
    if (field.count("moment_coeffs")) {
        theta = radial;
        for (double v : numbers_in(field["species_coeffs"])) theta.push_back(v);
        for (double v : numbers_in(field["moment_coeffs"])) theta.push_back(v);
    } else {  // MLIP load defaults (MTP_SPEC §6)
        const int K = basis.radial_funcs_count, R = basis.radial_basis_size;
        for (int p = 0; p < basis.species_count * basis.species_count; ++p)
            for (int mu = 0; mu < K; ++mu)
                for (int beta = 0; beta < R; ++beta) theta.push_back(mu == beta ? 1e-3 : 1e-6);
        theta.resize(basis.n_params(), 1e-3);
    }
    if (static_cast<int>(theta.size()) != basis.n_params()) throw std::runtime_error(path + ": wrong number of coefficients");
    return {basis, theta};
}

struct Frame {
    std::vector<double> positions, forces;
    std::vector<int> types;
    double cell[3][3] = {{0}};
    bool periodic[3] = {false, false, false};
    double energy = 0.0;
    std::array<double, 9> stress{};
};

// The .cfg format of MTP_SPEC §10, as the motep and MLIP-2 files write it (cartes_x/y/z, fx/fy/fz).
std::vector<Frame> read_cfg(const std::string& path, int max_frames) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<Frame> frames;
    std::string line;
    Frame f;
    int size = 0;
    while (std::getline(in, line) && static_cast<int>(frames.size()) < max_frames) {
        const std::string s = trim(line);
        if (s == "BEGIN_CFG") f = Frame();
        else if (s == "Size") { std::getline(in, line); size = std::stoi(line); }
        else if (s == "Supercell") {
            int row = 0;
            while (row < 3 && in.peek() != EOF) {
                const auto pos = in.tellg();
                std::getline(in, line);
                auto v = numbers_in(line);
                if (v.size() != 3 || trim(line).rfind("AtomData", 0) == 0) { in.seekg(pos); break; }
                for (int a = 0; a < 3; ++a) f.cell[row][a] = v[a];
                f.periodic[row++] = true;
            }
        } else if (s.rfind("AtomData:", 0) == 0) {
            std::istringstream header(s.substr(9));
            std::vector<std::string> cols;
            for (std::string c; header >> c;) cols.push_back(c);
            auto col = [&](const std::string& name) {
                return static_cast<int>(std::find(cols.begin(), cols.end(), name) - cols.begin());
            };
            for (int i = 0; i < size; ++i) {
                std::getline(in, line);
                auto v = numbers_in(line);
                f.types.push_back(col("type") < int(cols.size()) ? int(v[col("type")]) : 0);
                for (const char* c : {"cartes_x", "cartes_y", "cartes_z"}) f.positions.push_back(v[col(c)]);
                for (const char* c : {"fx", "fy", "fz"}) f.forces.push_back(col(c) < int(cols.size()) ? v[col(c)] : 0.0);
            }
        } else if (s == "Energy") { std::getline(in, line); f.energy = std::stod(line); }
        else if (s.rfind("PlusStress", 0) == 0) {
            std::getline(in, line);
            auto v = numbers_in(line);  // xx yy zz yz xz xy
            const int idx[6][2] = {{0, 0}, {1, 1}, {2, 2}, {1, 2}, {0, 2}, {0, 1}};
            for (int k = 0; k < 6; ++k) {
                f.stress[3 * idx[k][0] + idx[k][1]] = v[k];
                f.stress[3 * idx[k][1] + idx[k][0]] = v[k];
            }
        } else if (s == "END_CFG") frames.push_back(f);
    }
    if (frames.empty()) throw std::runtime_error(path + ": no configuration");
    return frames;
}

Structure neighbor_structure(const Frame& f, const Basis& basis) {
    VesinOptions options{};
    options.cutoff = basis.max_dist;
    options.full = true;
    options.sorted = true;
    options.algorithm = VesinAutoAlgorithm;
    options.return_vectors = true;
    options.n_threads = 1;
    VesinNeighborList list;
    const char* error = nullptr;
    const std::size_t n = f.types.size();
    if (vesin_neighbors(reinterpret_cast<const double(*)[3]>(f.positions.data()), n, f.cell, f.periodic,
                        VesinDevice{VesinCPU, 0}, options, &list, &error))
        throw std::runtime_error(std::string("vesin: ") + (error ? error : "failed"));
    std::vector<int> offsets(n + 1, 0), neighbors;
    std::vector<double> vectors;
    for (std::size_t p = 0; p < list.length; ++p) {
        const double* v = list.vectors[p];
        if (std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) >= basis.max_dist) continue;
        offsets[list.pairs[p][0] + 1]++;
        neighbors.push_back(static_cast<int>(list.pairs[p][1]));
        vectors.insert(vectors.end(), v, v + 3);
    }
    vesin_free(&list);
    for (std::size_t i = 0; i < n; ++i) offsets[i + 1] += offsets[i];
    return Structure(f.types, offsets, neighbors, vectors, basis.species_count);
}

double process_cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

struct Timing {
    double wall = 0.0, cpu = 0.0;  // medians over the runs, seconds
};

Timing median_times(const std::function<void()>& work, double min_time) {
    std::vector<double> walls, cpus;
    double total = 0.0;
    while (walls.size() < 5 || (total < min_time && walls.size() < 200)) {
        const double cpu0 = process_cpu_seconds();
        const auto start = std::chrono::steady_clock::now();
        work();
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        cpus.push_back(process_cpu_seconds() - cpu0);
        walls.push_back(dt);
        total += dt;
    }
    std::sort(walls.begin(), walls.end());
    std::sort(cpus.begin(), cpus.end());
    return {walls[walls.size() / 2], cpus[cpus.size() / 2]};
}

double median_seconds(const std::function<void()>& work, double min_time) { return median_times(work, min_time).wall; }

// "max_l=3,channels=6,copies=3,ranks=3x3[,radial_basis_size=8]" with the MTP's species, min_dist and cutoff
EtnShape parse_etn_shape(const std::string& spec, const Basis& basis) {
    EtnShape shape;
    shape.species_count = basis.species_count;
    shape.radial_basis_size = basis.radial_basis_size;
    shape.min_dist = basis.min_dist;
    shape.max_dist = basis.max_dist;
    shape.max_l = shape.channels = shape.copies = -1;
    std::istringstream items(spec);
    for (std::string item; std::getline(items, item, ',');) {
        const auto eq = item.find('=');
        if (eq == std::string::npos) throw std::runtime_error("--etn " + spec + ": '" + item + "' is not key=value");
        const std::string key = trim(item.substr(0, eq)), value = trim(item.substr(eq + 1));
        try {
            if (key == "max_l") shape.max_l = std::stoi(value);
            else if (key == "channels") shape.channels = std::stoi(value);
            else if (key == "copies") shape.copies = std::stoi(value);
            else if (key == "radial_basis_size") shape.radial_basis_size = std::stoi(value);
            else if (key == "ranks") {
                shape.ranks.clear();
                std::istringstream ranks(value);
                for (std::string r; std::getline(ranks, r, 'x');) shape.ranks.push_back(std::stoi(r));
            } else throw std::runtime_error("--etn " + spec + ": unknown key " + key);
        } catch (const std::logic_error&) {
            throw std::runtime_error("--etn " + spec + ": " + key + " needs an integer, got '" + value + "'");
        }
    }
    if (shape.max_l < 0 || shape.channels < 0 || shape.copies < 0 || shape.ranks.empty())
        throw std::runtime_error("--etn " + spec + ": max_l, channels, copies and ranks are required");
    return shape;
}

std::string etn_label(const EtnShape& s) {
    std::string ranks;
    for (std::size_t k = 0; k < s.ranks.size(); ++k) ranks += (k ? "x" : "") + std::to_string(s.ranks[k]);
    return "ETN L=" + std::to_string(s.max_l) + " Nc=" + std::to_string(s.channels) + " d=" + std::to_string(s.copies) +
           " r=" + ranks + " R=" + std::to_string(s.radial_basis_size);
}

struct ModelRow {
    int threads;
    Timing efs, lg;
    Timing ls;  // the MTP's linear system (TrainingSet::linear_system); zero for an ETN
};

// energy+forces+PlusStress and loss+gradient of one model over the set, as one table row
template <class Model>
ModelRow time_model(const Model& model, const std::vector<double>& theta, const TrainingSet& ts, int threads,
                    double min_time) {
    std::vector<double> e(ts.size()), forces(3 * ts.n_atoms()), stress(9 * ts.size()), grad(model.n_params());
    ModelRow row{threads, {}, {}, {}};
    row.efs = median_times([&] { ts.predict(model, theta.data(), e.data(), forces.data(), stress.data(), threads); }, min_time);
    row.lg = median_times([&] { ts.loss_and_gradient(model, theta.data(), grad.data(), nullptr, threads); }, min_time);
    return row;
}

void print_row(const std::string& name, int n_params, const ModelRow& r, double per_atom) {
    std::printf("%-40s %7d %7d %12.2f %8.2f %12.2f %8.2f %7.2f\n", name.c_str(), n_params, r.threads,
                r.efs.wall * per_atom, r.efs.cpu * per_atom, r.lg.wall * per_atom, r.lg.cpu * per_atom,
                r.lg.wall / r.efs.wall);
}

std::string json_rows(const std::vector<ModelRow>& rows, double per_atom, const char* indent) {
    std::ostringstream out;
    for (std::size_t k = 0; k < rows.size(); ++k) {
        const ModelRow& r = rows[k];
        out << (k ? ",\n" : "") << indent << "{\"threads\": " << r.threads
            << ", \"energy_forces_us_per_atom\": " << r.efs.wall * per_atom
            << ", \"loss_gradient_us_per_atom\": " << r.lg.wall * per_atom
            << ", \"energy_forces_cpu_us_per_atom\": " << r.efs.cpu * per_atom
            << ", \"loss_gradient_cpu_us_per_atom\": " << r.lg.cpu * per_atom;
        if (r.ls.wall > 0.0)
            out << ", \"linear_system_us_per_atom\": " << r.ls.wall * per_atom
                << ", \"linear_system_cpu_us_per_atom\": " << r.ls.cpu * per_atom;
        out << "}";
    }
    return out.str();
}

}  // namespace

int main(int argc, char** argv) {
    const char* usage =
        "usage: mtp_bench POTENTIAL.mtp DATA.cfg [--frames N] [--threads T] [--min-time S] [--json OUT]\n"
        "                 [--etn max_l=L,channels=N,copies=d,ranks=r1x...[,radial_basis_size=R]]... [--etn-only]\n";
    if (argc < 3) {
        std::cerr << usage;
        return 2;
    }
    int frames_wanted = 100, max_threads = omp_get_max_threads();
    double min_time = 1.0;
    bool etn_only = false;
    std::string json_path;
    std::vector<std::string> etn_specs;
    for (int k = 3; k < argc; ++k) {
        const std::string opt = argv[k];
        if (opt == "--etn-only") {
            etn_only = true;
            continue;
        }
        if (k + 1 >= argc) { std::cerr << "option " << opt << " needs a value\n" << usage; return 2; }
        const std::string value = argv[++k];
        if (opt == "--frames") frames_wanted = std::stoi(value);
        else if (opt == "--threads") max_threads = std::stoi(value);
        else if (opt == "--min-time") min_time = std::stod(value);
        else if (opt == "--json") json_path = value;
        else if (opt == "--etn") etn_specs.push_back(value);
        else { std::cerr << "unknown option " << opt << "\n" << usage; return 2; }
    }
    try {
        const Potential pot = read_mtp(argv[1]);
        std::vector<EtnModel> etns;
        std::vector<std::vector<double>> etn_thetas;
        for (const std::string& spec : etn_specs) {
            etns.emplace_back(parse_etn_shape(spec, pot.basis));
            std::mt19937_64 rng(42);
            std::uniform_real_distribution<double> uniform(-0.1, 0.1);
            std::vector<double> theta(etns.back().n_params());
            for (double& v : theta) v = uniform(rng);
            etn_thetas.push_back(std::move(theta));
        }
        const auto frames = read_cfg(argv[2], frames_wanted);
        long atoms = 0, pairs = 0;
        TrainingSet ts;
        for (const auto& f : frames) {
            Structure s = neighbor_structure(f, pot.basis);
            const int n = s.n_atoms;
            atoms += n;
            pairs += s.n_pairs();
            Labels y;  // MLIP-2 default weights 1, 0.01, 0.001, averaged over configurations
            const double K = static_cast<double>(frames.size());
            y.energy = f.energy;
            y.energy_weight = 1.0 / n / K;
            y.forces = f.forces;
            y.force_weights.assign(3 * n, 0.01 / K);
            y.stress = f.stress;
            y.stress_weights.fill(0.001 / n / K);
            ts.add(std::move(s), std::move(y));
        }
        const double per_atom = 1e6 / atoms;
        std::printf("%s on %zu configurations of %s: %ld atoms, %.1f neighbours per atom, %d parameters\n", argv[1],
                    frames.size(), argv[2], atoms, double(pairs) / atoms, pot.basis.n_params());
        double t_nl = 0.0, t_fvjp = 0.0;
        if (!etn_only) {
            t_nl = median_seconds([&] { for (const auto& f : frames) neighbor_structure(f, pot.basis); }, min_time);
            std::printf("neighbour lists (serial): %.2f us/atom\n", t_nl * per_atom);
            // one backpropagation-through-time step of a relaxation: a·dF/dX and a·dF/dθ for every configuration
            SiteKernel kernel(pot.basis, pot.theta.data());
            std::vector<double> gt(pot.basis.n_params()), gx;
            t_fvjp = median_seconds([&] {
                for (int k = 0; k < ts.size(); ++k) {
                    const Structure& s = ts.structure(k);
                    // a uniform cotangent would be a rigid translation, which the forces ignore (skipped)
                    std::vector<double> a(3 * s.n_atoms);
                    for (std::size_t q = 0; q < a.size(); ++q) a[q] = static_cast<double>(q % 7) - 3.0;
                    gx.resize(3 * s.n_atoms);
                    structure_force_vjp(kernel, s, a.data(), gt.data(), gx.data());
                }
            }, min_time);
            std::printf("force vector-Jacobian product in X and theta (serial): %.2f us/atom\n", t_fvjp * per_atom);
        }
        std::printf("%-40s %7s %7s %21s %21s %7s\n", "", "", "", "energy+forces+stress", "loss+gradient", "");
        std::printf("%-40s %7s %7s %12s %8s %12s %8s %7s\n", "model", "params", "threads", "us/atom", "cpu", "us/atom",
                    "cpu", "ratio");
        const std::string mtp_name = std::string("MTP ") + argv[1];
        std::vector<ModelRow> mtp_rows;
        std::vector<std::vector<ModelRow>> etn_rows(etns.size());
        // the models alternate at each thread count, so a change of the machine's load hits them alike
        for (int t = 1; t <= max_threads; ++t) {
            mtp_rows.push_back(time_model(pot.basis, pot.theta, ts, t, min_time));
            print_row(mtp_name, pot.basis.n_params(), mtp_rows.back(), per_atom);
            // variable projection's linear system (R factor of the species and moment coefficients' design)
            const int n_lin = pot.basis.species_count + static_cast<int>(pot.basis.mapping.size()) + 1;
            std::vector<double> R(static_cast<std::size_t>(n_lin) * n_lin);
            ModelRow& row = mtp_rows.back();
            row.ls = median_times([&] { ts.linear_system(pot.basis, pot.theta.data(), R.data(), t); }, min_time);
            std::printf("%-40s %7s %7d %12s %8s %12.2f %8.2f %7.2f  (linear system, ratio to loss+gradient)\n", "", "",
                        t, "", "", row.ls.wall * per_atom, row.ls.cpu * per_atom, row.ls.wall / row.lg.wall);
            for (std::size_t m = 0; m < etns.size(); ++m) {
                etn_rows[m].push_back(time_model(etns[m], etn_thetas[m], ts, t, min_time));
                print_row(etn_label(etns[m].shape()), etns[m].n_params(), etn_rows[m].back(), per_atom);
            }
        }
        if (!json_path.empty()) {
            std::ofstream out(json_path);
            out << "{\n  \"potential\": \"" << argv[1] << "\",\n  \"data\": \"" << argv[2] << "\",\n  \"configurations\": "
                << frames.size() << ",\n  \"atoms\": " << atoms << ",\n  \"neighbours_per_atom\": " << double(pairs) / atoms
                << ",\n  \"n_params\": " << pot.basis.n_params();
            if (!etn_only)
                out << ",\n  \"neighbour_list_us_per_atom\": " << t_nl * per_atom
                    << ",\n  \"force_vjp_us_per_atom\": " << t_fvjp * per_atom;
            out << ",\n  \"rows\": [\n" << json_rows(mtp_rows, per_atom, "    ") << "\n  ]";
            if (!etns.empty()) {
                out << ",\n  \"etn\": [";
                for (std::size_t m = 0; m < etns.size(); ++m) {
                    const EtnShape& sh = etns[m].shape();
                    out << (m ? "," : "") << "\n    {\"shape\": \"" << etn_specs[m] << "\", \"max_l\": " << sh.max_l
                        << ", \"channels\": " << sh.channels << ", \"copies\": " << sh.copies << ", \"ranks\": [";
                    for (std::size_t k = 0; k < sh.ranks.size(); ++k) out << (k ? ", " : "") << sh.ranks[k];
                    out << "], \"radial_basis_size\": " << sh.radial_basis_size << ", \"n_params\": " << etns[m].n_params()
                        << ",\n     \"rows\": [\n" << json_rows(etn_rows[m], per_atom, "       ") << "\n     ]}";
                }
                out << "\n  ]";
            }
            out << "\n}\n";
        }
    } catch (const std::exception& err) {
        std::cerr << "mtp_bench: " << err.what() << "\n";
        return 1;
    }
    return 0;
}
