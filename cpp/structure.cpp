#include "structure.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace mtpfit {

Structure::Structure(std::vector<int> types_, std::vector<int> offsets_, std::vector<int> neighbors_,
                     std::vector<double> vectors_, int species_count)
    : n_atoms(static_cast<int>(types_.size())), types(std::move(types_)), offsets(std::move(offsets_)),
      neighbors(std::move(neighbors_)), vectors(std::move(vectors_)) {
    if (static_cast<int>(offsets.size()) != n_atoms + 1 || offsets.front() != 0 ||
        offsets.back() != static_cast<int>(neighbors.size()))
        throw std::invalid_argument("neighbour offsets do not match the number of atoms and pairs");
    if (vectors.size() != 3 * neighbors.size())
        throw std::invalid_argument("need 3 coordinates per neighbour vector");
    for (int i = 0; i < n_atoms; ++i) {
        if (offsets[i + 1] < offsets[i]) throw std::invalid_argument("neighbour offsets must not decrease");
        if (types[i] < 0 || types[i] >= species_count)
            throw std::invalid_argument("atom " + std::to_string(i) + " has type " + std::to_string(types[i]) +
                                        " outside 0.." + std::to_string(species_count - 1));
    }
    for (int j : neighbors)
        if (j < 0 || j >= n_atoms) throw std::invalid_argument("neighbour index out of range");
    for (double v : vectors)
        if (!std::isfinite(v)) throw std::invalid_argument("non-finite neighbour vector");
}

void Structure::within(double cutoff, Structure& out, int n_threads) const {
    const double rc2 = cutoff * cutoff;
    out.n_atoms = n_atoms;
    out.types = types;
    out.shifts.clear();
    out.incoming_offsets.clear();
    out.incoming.clear();
    out.offsets.assign(n_atoms + 1, 0);
    // raw pointers: through the vectors the compiler must assume that writing `out` may move this structure's data
    const double* v = vectors.data();
    const int *off = offsets.data(), *nb = neighbors.data();
    int* kept = out.offsets.data();
#pragma omp parallel for num_threads(std::max(n_threads, 1)) schedule(static)
    for (int i = 0; i < n_atoms; ++i) {
        int count = 0;
        for (int p = off[i]; p < off[i + 1]; ++p) {
            const double* r = v + 3 * static_cast<std::size_t>(p);
            count += r[0] * r[0] + r[1] * r[1] + r[2] * r[2] < rc2;
        }
        kept[i + 1] = count;
    }
    for (int i = 0; i < n_atoms; ++i) kept[i + 1] += kept[i];
    out.neighbors.resize(kept[n_atoms]);
    out.vectors.resize(3 * static_cast<std::size_t>(kept[n_atoms]));
    int* out_nb = out.neighbors.data();
    double* out_v = out.vectors.data();
#pragma omp parallel for num_threads(std::max(n_threads, 1)) schedule(static)
    for (int i = 0; i < n_atoms; ++i) {
        int q = kept[i];
        for (int p = off[i]; p < off[i + 1]; ++p) {
            const double* r = v + 3 * static_cast<std::size_t>(p);
            // written unconditionally, advanced only for a kept pair: no branch to mispredict
            double* w = out_v + 3 * static_cast<std::size_t>(q);
            const bool inside = r[0] * r[0] + r[1] * r[1] + r[2] * r[2] < rc2;
            if (q < kept[i + 1]) {
                out_nb[q] = nb[p];
                w[0] = r[0];
                w[1] = r[1];
                w[2] = r[2];
            }
            q += inside;
        }
    }
}

void Structure::set_shifts(std::vector<int> shifts_) {
    if (shifts_.size() != 3 * neighbors.size())
        throw std::invalid_argument("need 3 cell shifts per neighbour, got " + std::to_string(shifts_.size()) +
                                    " values for " + std::to_string(neighbors.size()) + " neighbours");
    shifts = std::move(shifts_);
}

double Structure::set_positions(const double* x, const double* cell, int* closest, int n_threads) {
    if (!neighbors.empty() && !has_shifts())
        throw std::logic_error("set_positions needs the cell shifts of the neighbours (set_shifts)");
    double shortest2 = std::numeric_limits<double>::infinity();
    int which = -1, bad = n_atoms;
#pragma omp parallel num_threads(std::max(n_threads, 1))
    {
        double best2 = std::numeric_limits<double>::infinity();
        int best = -1, first_bad = n_atoms;
#pragma omp for schedule(static)
        for (int i = 0; i < n_atoms; ++i) {
            const double* xi = x + 3 * i;
            for (int p = offsets[i]; p < offsets[i + 1]; ++p) {
                const double* xj = x + 3 * neighbors[p];
                const int* S = &shifts[3 * p];
                double* v = &vectors[3 * p];
                // in the order vesin 0.6 computes x_j − x_i + S·box: an unmoved list gets its vectors back bit for bit
                for (int a = 0; a < 3; ++a)
                    v[a] = xj[a] - xi[a] + (S[0] * cell[a] + S[1] * cell[3 + a] + S[2] * cell[6 + a]);
                const double r2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
                if (!std::isfinite(r2)) first_bad = std::min(first_bad, i);
                if (r2 < best2) {
                    best2 = r2;
                    best = p;
                }
            }
        }
        // the lexicographic minimum of (r², pair): the same pair whatever the threads
#pragma omp critical(mtpfit_set_positions)
        {
            if (best >= 0 && (best2 < shortest2 || (best2 == shortest2 && best < which))) {
                shortest2 = best2;
                which = best;
            }
            bad = std::min(bad, first_bad);
        }
    }
    if (bad < n_atoms) throw std::invalid_argument("non-finite neighbour vector of atom " + std::to_string(bad));
    if (closest) *closest = which;
    return std::sqrt(shortest2);
}

void incoming_pairs(const Structure& s, std::vector<int>& offsets, std::vector<int>& pairs) {
    offsets.assign(s.n_atoms + 1, 0);
    for (int j : s.neighbors) ++offsets[j + 1];
    for (int j = 0; j < s.n_atoms; ++j) offsets[j + 1] += offsets[j];
    std::vector<int> fill(offsets.begin(), offsets.end() - 1);
    pairs.resize(s.neighbors.size());
    for (int p = 0; p < s.n_pairs(); ++p) pairs[fill[s.neighbors[p]]++] = p;
}

void Structure::index_incoming() {
    if (!has_incoming()) incoming_pairs(*this, incoming_offsets, incoming);
}

void gather_pair_gradients(const Structure& s, const double* g, const int* in_offsets, const int* in_pairs, int i,
                           double* force, double* virial) {
    double f[3] = {0.0, 0.0, 0.0}, w[9] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    const auto tally = [&](int p, double sign) {
        const double *gp = &g[3 * static_cast<std::size_t>(p)], *r = &s.vectors[3 * static_cast<std::size_t>(p)];
        for (int a = 0; a < 3; ++a) {
            f[a] += sign * gp[a];
            for (int c = 0; c < 3; ++c) w[3 * a + c] -= 0.5 * gp[a] * r[c];
        }
    };
    for (int p = s.offsets[i]; p < s.offsets[i + 1]; ++p) tally(p, 1.0);
    for (int q = in_offsets[i]; q < in_offsets[i + 1]; ++q) tally(in_pairs[q], -1.0);
    std::copy(f, f + 3, force);
    std::copy(w, w + 9, virial);
}

void scatter_pair_gradients(const Structure& s, int i, const double* g, double* forces, double* plus_stress) {
    const int begin = s.offsets[i];
    for (int n = 0; n < s.offsets[i + 1] - begin; ++n) {
        const int j = s.neighbors[begin + n];
        const double* gn = &g[3 * n];
        const double* r = &s.vectors[3 * static_cast<std::size_t>(begin + n)];
        for (int a = 0; a < 3; ++a) {
            forces[3 * i + a] += gn[a];
            forces[3 * j + a] -= gn[a];
            for (int b = 0; b < 3; ++b) plus_stress[3 * a + b] -= gn[a] * r[b];
        }
    }
}

bool pair_cotangents(const Structure& s, int i, const double* phi, const double* sigma, std::vector<double>& W) {
    const int begin = s.offsets[i], nn = s.offsets[i + 1] - begin;
    W.assign(3 * static_cast<std::size_t>(nn), 0.0);
    bool nonzero = false;
    for (int n = 0; n < nn; ++n) {
        double* w = &W[3 * static_cast<std::size_t>(n)];
        if (phi) {
            const int j = s.neighbors[begin + n];
            for (int a = 0; a < 3; ++a) w[a] = phi[3 * i + a] - phi[3 * j + a];
        }
        if (sigma) {
            const double* r = &s.vectors[3 * static_cast<std::size_t>(begin + n)];
            for (int a = 0; a < 3; ++a) w[a] -= sigma[3 * a] * r[0] + sigma[3 * a + 1] * r[1] + sigma[3 * a + 2] * r[2];
        }
        nonzero = nonzero || w[0] != 0.0 || w[1] != 0.0 || w[2] != 0.0;
    }
    return nonzero;
}

}  // namespace mtpfit
