#include "linear_system.hpp"

#include <algorithm>
#include <cmath>

#include "training_set.hpp"

namespace mtpfit {

namespace {
constexpr long kMaxFactorBlocks = 8;
}

RFactor::RFactor(int n_cols, int buffer_rows)
    : n_(n_cols), cursor_(n_cols), stack_(Eigen::MatrixXd::Zero(n_cols + std::max(buffer_rows, 1), n_cols)) {}

void RFactor::add_row(const double* x, std::ptrdiff_t stride, double scale) {
    if (cursor_ == stack_.rows()) reduce();
    for (int c = 0; c < n_; ++c) stack_(cursor_, c) = scale * x[c * stride];
    ++cursor_;
    empty_ = false;
}

void RFactor::add(const Eigen::MatrixXd& R) {
    if (empty_) {
        stack_.topRows(n_) = R.triangularView<Eigen::Upper>();
        empty_ = false;
        return;
    }
    for (int r = 0; r < n_; ++r) add_row(R.data() + r, R.rows(), 1.0);
}

void RFactor::reset() {
    stack_.topRows(n_).setZero();
    cursor_ = n_;
    empty_ = true;
}

void RFactor::reduce() {
    if (cursor_ == n_) return;
    Eigen::Ref<Eigen::MatrixXd> rows = stack_.topRows(cursor_);
    Eigen::HouseholderQR<Eigen::Ref<Eigen::MatrixXd>> qr(rows);  // in place: R in the upper triangle
    stack_.topRows(n_).triangularView<Eigen::StrictlyLower>().setZero();
    cursor_ = n_;
}

const Eigen::MatrixXd& RFactor::R() {
    reduce();
    R_ = stack_.topRows(n_);
    return R_;
}

namespace {

// G[q][α] = T[α][q] for q < columns: the basis Jacobian table (M rows of `row` values) transposed 8 rows at a
// time, so that the scatter below runs over contiguous α
void basis_columns(const Basis& basis, const double* T, std::size_t row, int columns, std::vector<double>& G) {
    const int M = static_cast<int>(basis.mapping.size());
    G.resize(static_cast<std::size_t>(columns) * M);
    for (int a1 = 0; a1 < M; a1 += 8) {
        const int n8 = std::min(8, M - a1);
        const double* src[8];
        for (int u = 0; u < n8; ++u) src[u] = T + (a1 + u) * row;
        for (int q = 0; q < columns; ++q) {
            double* out = &G[static_cast<std::size_t>(q) * M + a1];
            for (int u = 0; u < n8; ++u) out[u] = src[u][q];
        }
    }
}

}  // namespace

void structure_linear_design(SiteKernel& kernel, const Structure& s, double* D, int ld, TangentDirections directions) {
    const Basis& basis = kernel.basis();
    const int S = basis.species_count, M = static_cast<int>(basis.mapping.size()), n3 = 3 * s.n_atoms;
    const double chain_size = basis.basis_chain_size();
    for (int q = 0; q < n3 + 10; ++q) std::fill_n(D + static_cast<std::size_t>(q) * ld, S + M, 0.0);
    auto row_of = [&](int q) { return D + static_cast<std::size_t>(q) * ld + S; };
    double V[SiteKernel::kLanes];
    std::vector<int> atom, column_atom, count_of, members, column(s.n_atoms, -1);
    std::vector<double> vec, G;
    const int tile = kernel.jacobian_tile();
    for (int first = 0; first < s.n_atoms; first += SiteKernel::kLanes) {
        const int count = std::min(SiteKernel::kLanes, s.n_atoms - first);
        kernel.forward_batch(s, first, count, V, false);
        for (int lane = 0; lane < count; ++lane) {
            const int i = first + lane, begin = s.offsets[i];
            kernel.select(s, i, lane);
            D[s.types[i]] += 1.0;
            const std::vector<double>& m = kernel.moments();
            for (int a = 0; a < M; ++a) D[S + a] += m[basis.mapping[a]];
            const int na = kernel.n_active();
            const std::vector<int>& active = kernel.active_neighbors();
            // the distinct atoms among the neighbours (images of i move with i and belong to none), and the
            // neighbours that are images of each
            column_atom.clear();
            for (int a = 0; a < na; ++a) {
                const int j = s.neighbors[begin + active[a]];
                if (j != i && column[j] < 0) {
                    column[j] = static_cast<int>(column_atom.size());
                    column_atom.push_back(j);
                }
            }
            const int K = static_cast<int>(column_atom.size());
            count_of.assign(K, 0);
            for (int a = 0; a < na; ++a) {
                const int j = s.neighbors[begin + active[a]];
                if (j != i) ++count_of[column[j]];
            }
            const int images = K ? *std::max_element(count_of.begin(), count_of.end()) : 0;
            members.assign(static_cast<std::size_t>(K) * images, na);
            count_of.assign(K, 0);
            for (int a = 0; a < na; ++a) {
                const int j = s.neighbors[begin + active[a]];
                if (j != i) members[column[j] * images + count_of[column[j]]++] = a;
            }
            for (int j : column_atom) column[j] = -1;
            // fewer tangent columns (2 flops each per derivative of a basis function by a basic moment, about 5
            // per cycle), against the sums over images that make them (about one per cycle for each basic moment,
            // column and image)
            const int merged = (3 * K + SiteKernel::kStrains + 7) / 8 * 8, columns = (3 * na + 7) / 8 * 8;
            const double saved = 2.0 * chain_size * (columns - merged) / 5.0,
                         summing = 3.0 * static_cast<double>(basis.basic.size()) * K * images;
            if (directions == TangentDirections::atoms ||
                (directions == TangentDirections::automatic && merged <= 3 * tile && saved > summing)) {
                // along atom displacements and strains: ∂B/∂x_k for each neighbour atom k (F_k −= it, F_i += it:
                // the translation invariance Σ_k ∂B/∂x_k = 0) and the virial Σ_j g ⊗ r_ij, symmetric for each
                // rotation-invariant B (S_ab = S_ba −= its strain column)
                const double* T = kernel.basis_jacobian_atoms(members.data(), images, K);
                basis_columns(basis, T, kernel.jacobian_row(), 3 * K + SiteKernel::kStrains, G);
                for (int c = 0; c < 3; ++c) {
                    double* fi = row_of(1 + 3 * i + c);
                    for (int k = 0; k < K; ++k) {
                        const double* g = &G[static_cast<std::size_t>(c * K + k) * M];
                        double* fk = row_of(1 + 3 * column_atom[k] + c);
#pragma omp simd
                        for (int x = 0; x < M; ++x) {
                            fi[x] += g[x];
                            fk[x] -= g[x];
                        }
                    }
                }
                static constexpr int kStrainA[] = {0, 1, 2, 1, 0, 0}, kStrainB[] = {0, 1, 2, 2, 2, 1};
                for (int e = 0; e < SiteKernel::kStrains; ++e) {
                    const double* g = &G[static_cast<std::size_t>(3 * K + e) * M];
                    double* sab = row_of(1 + n3 + 3 * kStrainA[e] + kStrainB[e]);
#pragma omp simd
                    for (int x = 0; x < M; ++x) sab[x] -= g[x];
                    if (kStrainA[e] != kStrainB[e]) {
                        double* sba = row_of(1 + n3 + 3 * kStrainB[e] + kStrainA[e]);
#pragma omp simd
                        for (int x = 0; x < M; ++x) sba[x] -= g[x];
                    }
                }
                continue;
            }
            for (int a0 = 0; a0 < na; a0 += tile) {
                const int w = std::min(tile, na - a0);
                const double* T = kernel.basis_jacobian(a0, w);
                atom.resize(w);
                vec.resize(3 * w);
                for (int a = 0; a < w; ++a) {
                    const int p = begin + active[a0 + a];
                    atom[a] = s.neighbors[p];
                    for (int c = 0; c < 3; ++c) vec[3 * a + c] = s.vectors[3 * p + c];
                }
                // G[q][α] = ∂B_α/∂(r_ij)_c, q = c·w + a
                basis_columns(basis, T, kernel.jacobian_row(), 3 * w, G);
                // with g = ∂B/∂r_ij: F_i += g, F_j −= g, S −= g ⊗ r_ij (as evaluate_structure)
                for (int a = 0; a < w; ++a) {
                    const double* r = &vec[3 * a];
                    for (int c = 0; c < 3; ++c) {
                        const double* g = &G[static_cast<std::size_t>(c * w + a) * M];
                        double* fi = row_of(1 + 3 * i + c);
                        double* fj = row_of(1 + 3 * atom[a] + c);
                        double* s0 = row_of(1 + n3 + 3 * c);
                        double *s1 = s0 + ld, *s2 = s1 + ld;
                        const double x = r[0], y = r[1], z = r[2];
#pragma omp simd
                        for (int k = 0; k < M; ++k) {
                            fi[k] += g[k];
                            s0[k] -= g[k] * x;
                            s1[k] -= g[k] * y;
                            s2[k] -= g[k] * z;
                        }
#pragma omp simd
                        for (int k = 0; k < M; ++k) fj[k] -= g[k];
                    }
                }
            }
        }
    }
}

void site_linear_rows(const Basis& basis, const double* theta, const Structure& s, double* R, int n_threads) {
    const int S = basis.species_count, M = static_cast<int>(basis.mapping.size()), L = SiteKernel::kLanes;
    const int n_batches = (s.n_atoms + L - 1) / L;
#pragma omp parallel num_threads(std::max(n_threads, 1))
    {
        SiteKernel kernel(basis, theta);
        double V[SiteKernel::kLanes];
#pragma omp for schedule(dynamic, 4)
        for (int b = 0; b < n_batches; ++b) {
            const int first = b * L, count = std::min(L, s.n_atoms - first);
            kernel.forward_batch(s, first, count, V, false);
            for (int lane = 0; lane < count; ++lane) {
                const int i = first + lane;
                kernel.select(s, i, lane);
                double* row = R + static_cast<std::size_t>(i) * (S + M);
                std::fill_n(row, S, 0.0);
                row[s.types[i]] = 1.0;
                const std::vector<double>& m = kernel.moments();
                for (int a = 0; a < M; ++a) row[S + a] = m[basis.mapping[a]];
            }
        }
    }
}

void TrainingSet::linear_system(const Basis& basis, const double* theta, double* R_out, int n_threads,
                                TangentDirections directions) const {
    const int S = basis.species_count, M = static_cast<int>(basis.mapping.size()), n = S + M + 1;
    const int K = size();
    // Contiguous blocks of configurations of about equal cost, factored separately and combined pairwise in a
    // fixed tree: the result does not depend on the thread count. The cost of a configuration is its share of the
    // forward-mode pass (products × padded tangent columns of every atom) and of the QR updates (about 2.7 n²
    // flops per residual): blocks of equal residual counts can differ in cost when atoms have unequal neighbour
    // counts. A power of two of blocks (kMaxFactorBlocks at most), each of at least 8n rows: a pairwise merge
    // costs about 3.3 n³ flops, against the 2.7 n² of each of a block's own rows, and on 2^k threads the blocks
    // share out evenly.
    const long total = n_residuals_total();
    const long fill = std::max(1L, std::min<long>({kMaxFactorBlocks, total / (8L * n), K}));
    int blocks = 1;
    while (2 * blocks <= fill) blocks *= 2;
    // per tangent column: one FMA for each derivative of a basis function by a basic moment (basis_rows)
    const double per_column = 2.0 * basis.basis_chain_size(), per_row = 2.7 * n * n;
    std::vector<double> cost(K + 1, 0.0);
    for (int k = 0; k < K; ++k) {
        const Structure& s = structures_[k];
        double columns = 0.0;
        for (int i = 0; i < s.n_atoms; ++i) columns += (3 * (s.offsets[i + 1] - s.offsets[i]) + 7) / 8 * 8;
        cost[k + 1] = cost[k] + per_column * columns + per_row * n_residuals(k);
    }
    std::vector<int> bounds(blocks + 1, K);
    bounds[0] = 0;
    for (int k = 0, b = 1; k < K && b < blocks; ++k)
        if (cost[k + 1] * blocks >= cost[K] * b) bounds[b++] = k + 1;
    const int buffer = std::max(64, 3 * n);
    std::vector<Eigen::MatrixXd> parts(blocks);  // each block's R; the row buffers are per thread
#pragma omp parallel num_threads(n_threads)
    {
        SiteKernel kernel(basis, theta);
        std::vector<double> D;
        RFactor factor(n, buffer);
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < blocks; ++t) {
            factor.reset();
            for (int k = bounds[t]; k < bounds[t + 1]; ++k) {
                const Structure& s = structures_[k];
                const Labels& y = labels_[k];
                const int rows = n_residuals(k), n3 = 3 * s.n_atoms;
                // row-major: the design's n − 1 columns, then the label
                D.resize(static_cast<std::size_t>(rows) * n);
                structure_linear_design(kernel, s, D.data(), n, directions);
                D[n - 1] = y.energy;
                for (int c = 0; c < n3; ++c) D[static_cast<std::size_t>(1 + c) * n + n - 1] = y.forces[c];
                for (int c = 0; c < 9; ++c) D[static_cast<std::size_t>(1 + n3 + c) * n + n - 1] = y.stress[c];
                for (int q = 0; q < rows; ++q) {
                    const double w = q == 0 ? y.energy_weight
                                            : (q <= n3 ? y.force_weights[q - 1] : y.stress_weights[q - 1 - n3]);
                    if (w > 0.0) factor.add_row(D.data() + static_cast<std::size_t>(q) * n, 1, std::sqrt(w));
                }
            }
            parts[t] = factor.R();
        }
    }
    // pairwise merges in a fixed tree, the pairs of one level in parallel
    for (int width = 1; width < blocks; width *= 2) {
#pragma omp parallel for num_threads(n_threads) schedule(static, 1)
        for (int t = 0; t < blocks - width; t += 2 * width) {
            RFactor pair(n, n);
            pair.add(parts[t]);
            pair.add(parts[t + width]);
            parts[t] = pair.R();
        }
    }
    Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(R_out, n, n) = parts[0];
}

}  // namespace mtpfit
