#include "pair_mtp.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include "active_set_file.hpp"
#include "mtp_file.hpp"
#include "site_kernel.hpp"
#include "structure.hpp"

using namespace LAMMPS_NS;

namespace {
int thread_count() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// The text of a file, read by rank 0 and broadcast, so that every rank parses the same text and a malformed file
// fails on all ranks alike; a file that cannot be opened fails on all ranks with a message naming `what`.
std::string read_everywhere(LAMMPS_NS::LAMMPS* lmp, const std::string& path, const char* what) {
    std::string text;
    int status = 0;
    if (lmp->comm->me == 0) {
        std::ifstream in(path, std::ios::binary);
        if (in) {
            std::ostringstream buf;
            buf << in.rdbuf();
            text = buf.str();
        } else {
            status = 1;
        }
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, lmp->world);
    if (status) lmp->error->all(FLERR, "pair_style mtp: cannot open {} {}", what, path);
    long size = static_cast<long>(text.size());
    MPI_Bcast(&size, 1, MPI_LONG, 0, lmp->world);
    text.resize(size);
    MPI_Bcast(text.data(), static_cast<int>(size), MPI_CHAR, 0, lmp->world);
    return text;
}
}  // namespace

PairMTP::PairMTP(LAMMPS* lmp) : Pair(lmp) {
    single_enable = 0;
    restartinfo = 0;
    one_coeff = 1;
    manybody_flag = 1;
    // the virial is summed per site in compute(): with newton off, f·r over local atoms would miss the ghosts
    no_virial_fdotr_compute = 1;
    // per-atom virials are site virials, not the centroid form compute centroid/stress/atom expects
    centroidstressflag = CENTROID_NOTAVAIL;
    comm_reverse = 3;
    comm_reverse_off = 3;  // newton off: the style reverse-communicates the forces on ghosts itself
}

PairMTP::~PairMTP() {
    if (allocated) {
        memory->destroy(setflag);
        memory->destroy(cutsq);
    }
}

void PairMTP::allocate() {
    allocated = 1;
    const int n = atom->ntypes + 1;
    memory->create(setflag, n, n, "pair:setflag");
    memory->create(cutsq, n, n, "pair:cutsq");
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) setflag[i][j] = 0;
}

void PairMTP::settings(int narg, char** arg) {
    const char* usage = "expected 'pair_style mtp FILE.mtp [extrapolation FILE.als.txt [every N]]'";
    if (narg < 1) error->all(FLERR, "Illegal pair_style mtp command: {}", usage);
    std::string active_path;
    int every = 1;
    bool every_given = false;
    for (int k = 1; k < narg; k += 2) {
        if (k + 1 >= narg) error->all(FLERR, "Illegal pair_style mtp command: '{}' needs a value; {}", arg[k], usage);
        if (std::strcmp(arg[k], "extrapolation") == 0) {
            active_path = arg[k + 1];
        } else if (std::strcmp(arg[k], "every") == 0) {
            every = utils::inumeric(FLERR, arg[k + 1], false, lmp);
            every_given = true;
            if (every < 1) error->all(FLERR, "pair_style mtp: every {} must be a positive step count", every);
        } else {
            error->all(FLERR, "Illegal pair_style mtp command: unknown keyword '{}'; {}", arg[k], usage);
        }
    }
    if (active_path.empty() && every_given)
        error->all(FLERR, "pair_style mtp: 'every' sets how often the extrapolation grade is computed and needs "
                          "'extrapolation FILE.als.txt'");
    path_ = arg[0];
    const std::string text = read_everywhere(lmp, path_, "potential file");
    try {
        potential_ = std::make_unique<mtpfit::MtpFile>(mtpfit::parse_mtp(text, path_));
    } catch (const std::exception& err) {
        error->all(FLERR, "pair_style mtp: {}", err.what());
    }
    kernels_.clear();  // they refer to the previous potential's basis and θ
    species_of_type_.clear();
    if (allocated) {
        for (int i = 0; i <= atom->ntypes; ++i)
            for (int j = 0; j <= atom->ntypes; ++j) setflag[i][j] = 0;
    }
    active_.reset();
    grade_rows_.clear();  // sized for the previous set
    every_ = every;
    if (!active_path.empty()) read_active_set(active_path);
    // compute pair reads nextra when it is defined: one extra value, the largest γ
    nextra = active_ ? 1 : 0;
    gamma_max_ = 0.0;
    pvector = active_ ? &gamma_max_ : nullptr;
}

void PairMTP::read_active_set(const std::string& path) {
    const std::string text = read_everywhere(lmp, path, "active set file");
    try {
        active_ = std::make_unique<mtpfit::ActiveSetFile>(mtpfit::parse_active_set(text, path));
    } catch (const std::exception& err) {
        error->all(FLERR, "pair_style mtp: {}", err.what());
    }
    const mtpfit::Basis& basis = *potential_->basis;
    const int S = basis.species_count, M = static_cast<int>(basis.mapping.size());
    const auto& a = *active_;
    if (a.n_params != static_cast<int>(potential_->theta.size()) || a.species_count != S || a.basis_functions != M ||
        a.theta_fnv1a64 != mtpfit::theta_fnv1a64(potential_->theta))
        error->all(FLERR, "pair_style mtp: the active set {} was written for another potential than {} ({} "
                          "coefficients, {} species, {} basis functions and theta checksum {:016x}, against {}, {}, "
                          "{} and {:016x}): export the active set of {} (mtpfit lammps --extrapolation {})",
                   path, path_, a.n_params, a.species_count, a.basis_functions, a.theta_fnv1a64,
                   potential_->theta.size(), S, M, mtpfit::theta_fnv1a64(potential_->theta), path_, path_);
    column_source_.clear();
    for (const int c : a.columns) column_source_.push_back(c < S ? -1 - c : basis.mapping[c - S]);
}

void PairMTP::coeff(int narg, char** arg) {
    if (!potential_) error->all(FLERR, "pair_coeff before pair_style mtp");
    const int ntypes = atom->ntypes;
    if (narg != 2 + ntypes || std::strcmp(arg[0], "*") != 0 || std::strcmp(arg[1], "*") != 0)
        error->all(FLERR, "Incorrect args for pair_coeff mtp: expected 'pair_coeff * * S1 … S{}' with one "
                          "species per atom type",
                   ntypes);
    if (!allocated) allocate();
    const auto& elements = potential_->elements;
    const int S = potential_->basis->species_count;
    species_of_type_.assign(ntypes + 1, -1);
    for (int t = 1; t <= ntypes; ++t) {
        const std::string name = arg[1 + t];
        if (!elements.empty()) {
            const auto it = std::find(elements.begin(), elements.end(), name);
            if (it == elements.end())
                error->all(FLERR, "pair_coeff mtp: element {} (atom type {}) is not one of the species of {}: {}",
                           name, t, path_, utils::join_words(elements, " "));
            species_of_type_[t] = static_cast<int>(it - elements.begin());
        } else {
            if (!utils::is_integer(name) || std::stoi(name) < 0 || std::stoi(name) >= S)
                error->all(FLERR, "pair_coeff mtp: {} names no elements (no 'potential_tag = elements:…'), so "
                                  "atom type {} needs a species index 0 … {}, got '{}'",
                           path_, t, S - 1, name);
            species_of_type_[t] = std::stoi(name);
        }
    }
    for (int i = 1; i <= ntypes; ++i)
        for (int j = i; j <= ntypes; ++j) setflag[i][j] = 1;
}

void PairMTP::init_style() {
    if (std::strcmp(update->unit_style, "metal") != 0)
        error->all(FLERR, "pair_style mtp requires 'units metal' (the potential is in eV and Å)");
    neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairMTP::init_one(int, int) { return potential_->basis->max_dist; }

void PairMTP::build_neighbourhoods() {
    double** x = atom->x;
    const int* type = atom->type;
    const int nall = atom->nlocal + atom->nghost, inum = list->inum;
    const double rc = potential_->basis->max_dist, rc2 = rc * rc;
    // the core's atom index space: the inum sites, then every local and ghost atom as a neighbour (its species
    // is all the kernel reads of a neighbour), so sites are contiguous whatever order ilist has
    types_.resize(inum + nall);
    for (int ii = 0; ii < inum; ++ii) types_[ii] = species_of_type_[type[list->ilist[ii]]];
    for (int j = 0; j < nall; ++j) types_[inum + j] = species_of_type_[type[j]];
    offsets_.assign(inum + nall + 1, 0);
    neighbors_.clear();
    partner_.clear();
    vectors_.clear();
    for (int ii = 0; ii < inum; ++ii) {
        const int i = list->ilist[ii];
        const int* jlist = list->firstneigh[i];
        for (int jj = 0; jj < list->numneigh[i]; ++jj) {
            const int j = jlist[jj] & NEIGHMASK;
            const double d[3] = {x[j][0] - x[i][0], x[j][1] - x[i][1], x[j][2] - x[i][2]};
            // the same test as the kernel's: a neighbour list holds pairs out to cutoff + skin
            if (d[0] * d[0] + d[1] * d[1] + d[2] * d[2] >= rc2) continue;
            neighbors_.push_back(inum + j);
            partner_.push_back(j);
            vectors_.insert(vectors_.end(), d, d + 3);
        }
        offsets_[ii + 1] = static_cast<int>(neighbors_.size());
    }
    std::fill(offsets_.begin() + inum + 1, offsets_.end(), static_cast<int>(neighbors_.size()));
}

void PairMTP::site_gradients(bool graded) {
    const int inum = list->inum, S = potential_->basis->species_count;
    std::unique_ptr<mtpfit::Structure> s;
    try {
        s = std::make_unique<mtpfit::Structure>(std::move(types_), std::move(offsets_), std::move(neighbors_),
                                                std::move(vectors_), S);
    } catch (const std::exception& err) {
        error->one(FLERR, "pair_style mtp: {}", err.what());
    }
    site_energy_.resize(inum);
    gradients_.resize(3 * static_cast<std::size_t>(s->n_pairs()));
    const int nthreads = thread_count();
    while (static_cast<int>(kernels_.size()) < nthreads)
        kernels_.push_back(std::make_unique<mtpfit::SiteKernel>(*potential_->basis, potential_->theta.data()));
    const int n = graded ? static_cast<int>(column_source_.size()) : 0;
    if (graded) grade_rows_.resize(nthreads, std::vector<double>(n));
    const double* inverse = graded ? active_->inverse.data() : nullptr;
    const int* ilist = list->ilist;
    constexpr int L = mtpfit::SiteKernel::kLanes;
    const int batches = (inum + L - 1) / L;
    // each site's V_i and g_ij go to their own slots: the result does not depend on the number of threads
#pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        const int thread = omp_get_thread_num();
#else
        const int thread = 0;
#endif
        mtpfit::SiteKernel& kernel = *kernels_[thread];
        double* y = graded ? grade_rows_[thread].data() : nullptr;
#pragma omp for schedule(dynamic, 4)
        for (int b = 0; b < batches; ++b) {
            const int first = b * L, count = std::min(L, inum - first);
            kernel.forward_batch(*s, first, count, &site_energy_[first]);
            for (int lane = 0; lane < count; ++lane) {
                const int site = first + lane;
                kernel.select(*s, site, lane);
                if (graded) {
                    // y = b_i A⁻¹ as a sum of the rows of A⁻¹, skipping the zero entries of the species one-hot
                    const std::vector<double>& m = kernel.moments();
                    std::fill(y, y + n, 0.0);
                    for (int k = 0; k < n; ++k) {
                        const int source = column_source_[k];
                        const double bk = source >= 0 ? m[source] : (-1 - source == s->types[site] ? 1.0 : 0.0);
                        if (bk == 0.0) continue;
                        const double* row = inverse + static_cast<std::size_t>(k) * n;
                        for (int j = 0; j < n; ++j) y[j] += bk * row[j];
                    }
                    double g = 0.0;
                    for (int j = 0; j < n; ++j) g = std::max(g, std::fabs(y[j]));
                    gamma_[ilist[site]] = g;
                }
                kernel.pair_gradients(&gradients_[3 * static_cast<std::size_t>(s->offsets[site])]);
            }
        }
    }
    // hand the buffers back for the next call (their capacity is kept)
    types_ = std::move(s->types);
    offsets_ = std::move(s->offsets);
    neighbors_ = std::move(s->neighbors);
    vectors_ = std::move(s->vectors);
}

void PairMTP::compute(int eflag, int vflag) {
    ev_init(eflag, vflag);
    const bool graded = active_ && (gamma_flag_ || update->ntimestep % every_ == 0);
    if (active_) {
        if (static_cast<int>(gamma_.size()) < atom->nmax) gamma_.resize(atom->nmax);
        // 0 marks "not graded on this step" (a grade is positive): no stale values of atoms that have moved on
        std::fill(gamma_.begin(), gamma_.begin() + atom->nlocal, 0.0);
    }
    build_neighbourhoods();
    site_gradients(graded);
    if (graded) {  // every rank grades the same steps: the collective stays matched
        double local = 0.0, global = 0.0;
        for (int i = 0; i < atom->nlocal; ++i) local = std::max(local, gamma_[i]);
        MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_MAX, world);
        gamma_max_ = comm->me == 0 ? global : 0.0;
    } else {
        gamma_max_ = 0.0;
    }

    double** f = atom->f;
    const int nlocal = atom->nlocal, nall = nlocal + atom->nghost, inum = list->inum;
    const bool newton = force->newton_pair;
    // with newton on the forces on ghosts go to f, which LAMMPS sums into the owners; with newton off LAMMPS
    // neither clears nor communicates them, so they are collected here and reverse-communicated below
    if (!newton) ghost_force_.assign(3 * static_cast<std::size_t>(nall), 0.0);
    for (int ii = 0; ii < inum; ++ii) {
        const int i = list->ilist[ii];
        double w[6] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        for (int p = offsets_[ii]; p < offsets_[ii + 1]; ++p) {
            const int j = partner_[p];
            const double* g = &gradients_[3 * static_cast<std::size_t>(p)];
            const double* r = &vectors_[3 * static_cast<std::size_t>(p)];
            f[i][0] += g[0];
            f[i][1] += g[1];
            f[i][2] += g[2];
            double* fj = newton ? f[j] : &ghost_force_[3 * static_cast<std::size_t>(j)];
            fj[0] -= g[0];
            fj[1] -= g[1];
            fj[2] -= g[2];
            // LAMMPS's virial Σ (r_i − r_j) ⊗ f_i over the pair: r_i − r_j = −r_ij, force +g on i
            w[0] -= r[0] * g[0];
            w[1] -= r[1] * g[1];
            w[2] -= r[2] * g[2];
            w[3] -= r[0] * g[1];
            w[4] -= r[0] * g[2];
            w[5] -= r[1] * g[2];
        }
        if (eflag_global) eng_vdwl += site_energy_[ii];
        if (eflag_atom) eatom[i] += site_energy_[ii];
        if (vflag_global)
            for (int k = 0; k < 6; ++k) virial[k] += w[k];
        if (vflag_atom)
            for (int k = 0; k < 6; ++k) vatom[i][k] += w[k];
    }
    if (!newton) {
        comm->reverse_comm(this);
        for (int i = 0; i < nlocal; ++i)
            for (int a = 0; a < 3; ++a) f[i][a] += ghost_force_[3 * static_cast<std::size_t>(i) + a];
    }
}

int PairMTP::pack_reverse_comm(int n, int first, double* buf) {
    std::copy(&ghost_force_[3 * static_cast<std::size_t>(first)],
              &ghost_force_[3 * static_cast<std::size_t>(first + n)], buf);
    return 3 * n;
}

void PairMTP::unpack_reverse_comm(int n, int* list, double* buf) {
    for (int k = 0; k < n; ++k)
        for (int a = 0; a < 3; ++a) ghost_force_[3 * static_cast<std::size_t>(list[k]) + a] += buf[3 * k + a];
}

void* PairMTP::extract(const char* name, int& dim) {
    dim = 0;
    // fix pair's trigger for the per-atom value "gamma": it sets the flag on the steps it samples
    if (active_ && std::strcmp(name, "gamma_flag") == 0) return &gamma_flag_;
    return nullptr;
}

void* PairMTP::extract_peratom(const char* name, int& ncol) {
    ncol = 0;
    if (active_ && std::strcmp(name, "gamma") == 0) {
        if (static_cast<int>(gamma_.size()) < atom->nmax) gamma_.resize(atom->nmax, 0.0);
        return gamma_.data();
    }
    return nullptr;
}

double PairMTP::memory_usage() {
    double bytes = Pair::memory_usage();
    bytes += sizeof(int) * (types_.capacity() + offsets_.capacity() + neighbors_.capacity() + partner_.capacity());
    bytes += sizeof(double) * (vectors_.capacity() + site_energy_.capacity() + gradients_.capacity() +
                               ghost_force_.capacity() + gamma_.capacity());
    if (active_) bytes += sizeof(double) * active_->inverse.capacity();
    return bytes;
}
