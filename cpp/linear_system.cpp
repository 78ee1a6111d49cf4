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
}

void RFactor::add(const Eigen::MatrixXd& R) {
    for (int r = 0; r < n_; ++r) add_row(R.data() + r, R.rows(), 1.0);
}

void RFactor::reset() {
    stack_.topRows(n_).setZero();
    cursor_ = n_;
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

void structure_linear_design(SiteKernel& kernel, const Structure& s, double* D, int ld) {
    const Basis& basis = kernel.basis();
    const int S = basis.species_count, M = static_cast<int>(basis.mapping.size()), n3 = 3 * s.n_atoms;
    for (int q = 0; q < n3 + 10; ++q) std::fill_n(D + static_cast<std::size_t>(q) * ld, S + M, 0.0);
    double V[SiteKernel::kLanes];
    std::vector<int> atom;
    std::vector<double> vec, G;
    for (int first = 0; first < s.n_atoms; first += SiteKernel::kLanes) {
        const int count = std::min(SiteKernel::kLanes, s.n_atoms - first);
        kernel.forward_batch(s, first, count, V, false);
        for (int lane = 0; lane < count; ++lane) {
            const int i = first + lane, begin = s.offsets[i];
            kernel.select(s, i, lane);
            D[s.types[i]] += 1.0;
            const std::vector<double>& m = kernel.moments();
            for (int a = 0; a < M; ++a) D[S + a] += m[basis.mapping[a]];
            const int na = kernel.n_active(), tile = kernel.jacobian_tile();
            const std::vector<int>& active = kernel.active_neighbors();
            for (int a0 = 0; a0 < na; a0 += tile) {
                const int w = std::min(tile, na - a0);
                const double* T = kernel.moment_jacobian(a0, w);
                const std::size_t row = kernel.jacobian_row();
                atom.resize(w);
                vec.resize(3 * w);
                for (int a = 0; a < w; ++a) {
                    const int p = begin + active[a0 + a];
                    atom[a] = s.neighbors[p];
                    for (int c = 0; c < 3; ++c) vec[3 * a + c] = s.vectors[3 * p + c];
                }
                // G[q][α] = ∂B_α/∂(r_ij)_c, q = c·w + a: the basis functions' rows of T, transposed 8 at a time
                G.resize(static_cast<std::size_t>(3 * w) * M);
                for (int a1 = 0; a1 < M; a1 += 8) {
                    const int n8 = std::min(8, M - a1);
                    const double* src[8];
                    for (int u = 0; u < n8; ++u) src[u] = T + basis.mapping[a1 + u] * row;
                    for (int q = 0; q < 3 * w; ++q) {
                        double* out = &G[static_cast<std::size_t>(q) * M + a1];
                        for (int u = 0; u < n8; ++u) out[u] = src[u][q];
                    }
                }
                // with g = ∂B/∂r_ij: F_i += g, F_j −= g, S −= g ⊗ r_ij (as evaluate_structure)
                for (int a = 0; a < w; ++a) {
                    const double* r = &vec[3 * a];
                    for (int c = 0; c < 3; ++c) {
                        const double* g = &G[static_cast<std::size_t>(c * w + a) * M];
                        double* fi = D + static_cast<std::size_t>(1 + 3 * i + c) * ld + S;
                        double* fj = D + static_cast<std::size_t>(1 + 3 * atom[a] + c) * ld + S;
                        double* s0 = D + static_cast<std::size_t>(1 + n3 + 3 * c) * ld + S;
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

void TrainingSet::linear_system(const Basis& basis, const double* theta, double* R_out, int n_threads) const {
    const int S = basis.species_count, M = static_cast<int>(basis.mapping.size()), n = S + M + 1;
    const int K = size();
    // contiguous blocks of configurations with about equal numbers of residuals, as many as the data fill with at
    // least 8n rows each (at most kMaxFactorBlocks), factored separately and combined in block order: the result
    // does not depend on the thread count
    const long total = n_residuals_total();
    const int blocks = static_cast<int>(std::max(1L, std::min<long>({kMaxFactorBlocks, total / (8L * n), K})));
    std::vector<int> bounds(blocks + 1, K);
    bounds[0] = 0;
    for (int k = 0, b = 1; k < K && b < blocks; ++k)
        if (residual_offset(k + 1) * blocks >= total * b) bounds[b++] = k + 1;
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
                structure_linear_design(kernel, s, D.data(), n);
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
    RFactor combined(n, buffer);
    for (const Eigen::MatrixXd& R : parts) combined.add(R);
    Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(R_out, n, n) = combined.R();
}

}  // namespace mtpfit
