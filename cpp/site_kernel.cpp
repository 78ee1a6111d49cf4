#include "site_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

namespace mtpfit {

namespace {
constexpr int kPad = 4;  // pad neighbour rows to whole AVX2 vectors of doubles

// basis_jacobian() works on chunks of 8 doubles (one AVX-512 register, two AVX2 ones)
typedef double Chunk __attribute__((vector_size(8 * sizeof(double))));
inline Chunk load_chunk(const double* p) {
    Chunk v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
}

SiteKernel::SiteKernel(const Basis& basis, const double* theta)
    : basis_(basis), theta_(theta), K_(basis.radial_funcs_count), R_(basis.radial_basis_size),
      D_(basis.max_degree + 1), m_(basis.moments_count), adj_(basis.moments_count),
      lane_tan_adj_(basis.moments_count) {
    for (auto* b : {&batch_m_, &batch_adj_, &batch_tan_, &batch_tan_adj_}) b->assign(basis.moments_count, Lanes{});
    std::map<std::array<int, 3>, int> index;
    std::vector<std::vector<int>> members;
    for (std::size_t k = 0; k < basis.basic.size(); ++k) {
        const auto& b = basis.basic[k];
        const std::array<int, 3> pqw{b.p, b.q, b.w};
        auto it = index.find(pqw);
        if (it == index.end()) {
            it = index.emplace(pqw, static_cast<int>(monomials_.size())).first;
            monomials_.push_back(pqw);
            degree_.push_back(b.p + b.q + b.w);
            members.emplace_back();
        }
        members[it->second].push_back(static_cast<int>(k));
    }
    group_begin_.push_back(0);
    for (const auto& group : members) {
        for (int k : group) {
            group_moment_.push_back(k);
            group_mu_.push_back(basis.basic[k].mu);
        }
        group_begin_.push_back(static_cast<int>(group_moment_.size()));
    }
    // basis_chain(): a basic moment's derivative by itself is 1 throughout; a derived moment's list is set by the
    // first run that targets it (a later one, none in MLIP's files, adds to it)
    chain_.assign(basis.chain_basic.size(), Lanes{});
    for (std::size_t k = 0; k < basis.basic.size(); ++k) chain_[basis.chain_offsets[k]] = Lanes{} + 1.0;
    std::vector<char> written(basis.moments_count, 0);
    for (const auto& run : basis.runs) {
        run_assigns_.push_back(!written[run.target]);
        written[run.target] = 1;
    }
}

void SiteKernel::ensure_stride(int n_active) {
    const int needed = std::max(kPad, (n_active + kPad - 1) / kPad * kPad);
    if (needed <= stride_) return;
    stride_ = needed;
    const std::size_t s = static_cast<std::size_t>(stride_) * kLanes, dm = monomials_.size();
    for (auto* t : {&r_, &inv_r_, &ux_, &uy_, &uz_}) t->assign(s, 0.0);
    powers_.assign(3 * D_ * s, 0.0);
    for (auto* t : {&Q_, &dQ_, &ddQ_}) t->assign(R_ * s, 0.0);
    for (auto* t : {&f_, &df_, &ddf_, &P_, &Dmu_}) t->assign(K_ * s, 0.0);
    for (auto* t : {&t1_, &t2_}) t->assign(dm * s, 0.0);
    acc_.assign(24 * s, 0.0);
    for (auto& slot : slots_) slot.structure = nullptr;  // their tables are gone
}

void SiteKernel::prepare_batch(const Structure& s, int first, int count) {
    chain_current_ = false;
    // size the rows for the batch's widest atom first: growing them later would drop the lanes already filled
    int widest = 0;
    for (int lane = 0; lane < count; ++lane) widest = std::max(widest, count_active(s, first + lane));
    ensure_stride(widest);
}

int SiteKernel::count_active(const Structure& s, int i) const {
    const double rc2 = basis_.max_dist * basis_.max_dist;
    int n = 0;
    for (int p = s.offsets[i]; p < s.offsets[i + 1]; ++p) {
        const double* v = &s.vectors[3 * p];
        n += v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < rc2;
    }
    return n;
}

void SiteKernel::monomial_row(int d, double* M) const {
    const int p = monomials_[d][0], q = monomials_[d][1], w = monomials_[d][2];
    const double *X = row(powers_, p), *Y = row(powers_, D_ + q), *Z = row(powers_, 2 * D_ + w);
    const int na = slots_[lane_].n_act;
#pragma omp simd
    for (int a = 0; a < na; ++a) M[a] = X[a] * Y[a] * Z[a];
}

void SiteKernel::monomial_gradient_rows(int d, double* gx, double* gy, double* gz) const {
    const int p = monomials_[d][0], q = monomials_[d][1], w = monomials_[d][2];
    const double *X = row(powers_, p), *Y = row(powers_, D_ + q), *Z = row(powers_, 2 * D_ + w);
    const double *Xm = row(powers_, std::max(p - 1, 0)), *Ym = row(powers_, D_ + std::max(q - 1, 0)),
                 *Zm = row(powers_, 2 * D_ + std::max(w - 1, 0));
    const int na = slots_[lane_].n_act;
#pragma omp simd
    for (int a = 0; a < na; ++a) {
        gx[a] = p * Xm[a] * Y[a] * Z[a];
        gy[a] = q * X[a] * Ym[a] * Z[a];
        gz[a] = w * X[a] * Y[a] * Zm[a];
    }
}

void SiteKernel::basic_moments(int lane) {
    const int na = slots_[lane_].n_act;
    double* M = row(acc_, 6);
    for (std::size_t d = 0; d < monomials_.size(); ++d) {
        monomial_row(d, M);
        for (int g = group_begin_[d]; g < group_begin_[d + 1]; ++g) {
            const double* f = row(f_, group_mu_[g]);
            double sum = 0.0;
#pragma omp simd reduction(+ : sum)
            for (int a = 0; a < na; ++a) sum += f[a] * M[a];
            batch_m_[group_moment_[g]][lane] = sum;
        }
    }
}

void SiteKernel::forward_batch(const Structure& s, int first, int count, double* V, bool adjoints) {
    std::fill(batch_m_.begin(), batch_m_.end(), Lanes{});
    prepare_batch(s, first, count);
    for (int lane = 0; lane < count; ++lane) {
        lane_ = lane;
        geometry(s, first + lane);
        basic_moments(lane);
    }
    Lanes* m = batch_m_.data();
    for (const auto& run : basis_.runs) {
        Lanes sum{};
        for (int k = run.begin; k < run.end; ++k) {
            const auto& t = basis_.products[k];
            sum += static_cast<double>(t.mult) * m[t.left] * m[t.right];
        }
        m[run.target] += sum;
    }
    const double* c = theta_ + basis_.moment_offset();
    for (int lane = 0; lane < count; ++lane) {
        double v = theta_[basis_.species_offset() + s.types[first + lane]];
        for (std::size_t a = 0; a < basis_.mapping.size(); ++a) v += c[a] * m[basis_.mapping[a]][lane];
        V[lane] = v;
    }
    if (!adjoints) return;
    // reverse pass: dV/dm, gathered per moment from its uses (Basis::reverse_order)
    Lanes* adj = batch_adj_.data();
    std::fill(batch_adj_.begin(), batch_adj_.end(), Lanes{});
    for (std::size_t a = 0; a < basis_.mapping.size(); ++a) adj[basis_.mapping[a]] += c[a];
    const int *use_target = basis_.use_target.data(), *use_other = basis_.use_other.data();
    const double* mult = basis_.use_mult.data();
    for (int x : basis_.reverse_order) {
        Lanes sum{};
        for (int u = basis_.use_offsets[x]; u < basis_.use_offsets[x + 1]; ++u)
            sum += mult[u] * adj[use_target[u]] * m[use_other[u]];
        adj[x] += sum;
    }
}

void SiteKernel::select(const Structure& s, int i, int lane) {
    lane_ = lane;
    geometry(s, i);
    const std::size_t n = m_.size();
    for (std::size_t k = 0; k < n; ++k) {
        m_[k] = batch_m_[k][lane];
        adj_[k] = batch_adj_[k][lane];
    }
}

void SiteKernel::save(double* moments, double* adjoints) const {
    std::copy(m_.begin(), m_.end(), moments);
    std::copy(adj_.begin(), adj_.end(), adjoints);
}

void SiteKernel::load_batch(const Structure& s, int first, int count, const double* state) {
    const std::size_t n = m_.size();
    prepare_batch(s, first, count);
    for (int lane = 0; lane < count; ++lane) {
        lane_ = lane;
        geometry(s, first + lane);
        const double* saved = state + 2 * n * (first + lane);
        for (std::size_t k = 0; k < n; ++k) {
            batch_m_[k][lane] = saved[k];
            batch_adj_[k][lane] = saved[n + k];
        }
    }
}

void SiteKernel::geometry(const Structure& s, int i) {
    Slot& slot = slots_[lane_];
    if (slot.structure == &s && slot.atom == i) return;
    const int begin = s.offsets[i];
    const double rc = basis_.max_dist, rmin = basis_.min_dist, scale = basis_.scaling;
    // a training set (or a Verlet list) may be built with a larger cutoff than this basis uses: compact the
    // neighbours inside it
    slot.active.clear();
    for (int n = 0; n < s.offsets[i + 1] - begin; ++n) {
        const double* v = &s.vectors[3 * (begin + n)];
        if (v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < rc * rc) slot.active.push_back(n);
    }
    ensure_stride(static_cast<int>(slot.active.size()));  // may drop every slot's tables, this one's too
    slot.structure = &s;
    slot.atom = i;
    slot.n_nb = s.offsets[i + 1] - begin;
    slot.type = s.types[i];
    slot.n_act = static_cast<int>(slot.active.size());
    slot.nb_type.resize(slot.n_act);
    const int na = slot.n_act;
    double *r = row(r_, 0), *inv_r = row(inv_r_, 0), *ux = row(ux_, 0), *uy = row(uy_, 0), *uz = row(uz_, 0);
#pragma omp simd
    for (int a = 0; a < na; ++a) {
        const int n = slot.active[a];
        const double* v = &s.vectors[3 * (begin + n)];
        r[a] = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        inv_r[a] = 1.0 / r[a];
        ux[a] = v[0] * inv_r[a];
        uy[a] = v[1] * inv_r[a];
        uz[a] = v[2] * inv_r[a];
        slot.nb_type[a] = s.types[s.neighbors[begin + n]];
    }
    // radial basis Q_β = s·T_β(ξ)·(R_cut − r)² and its r-derivative (MTP_SPEC §2), by the Chebyshev recurrence
    {
        double *xi = row(acc_, 0), *d = row(acc_, 1), *T0 = row(acc_, 2), *T1 = row(acc_, 3), *dT0 = row(acc_, 4),
               *dT1 = row(acc_, 5);
        const double dxi = 2.0 / (rc - rmin);
        double *Q0 = row(Q_, 0), *dQ0 = row(dQ_, 0), *Q1 = row(Q_, 1), *dQ1 = row(dQ_, 1);
    #pragma omp simd
        for (int a = 0; a < na; ++a) {
            xi[a] = (2.0 * r[a] - rmin - rc) / (rc - rmin);
            d[a] = rc - r[a];
            T0[a] = 1.0; T1[a] = xi[a]; dT0[a] = 0.0; dT1[a] = 1.0;
            Q0[a] = scale * d[a] * d[a];
            dQ0[a] = -2.0 * scale * d[a];
            Q1[a] = scale * xi[a] * d[a] * d[a];
            dQ1[a] = scale * (dxi * d[a] * d[a] - 2.0 * xi[a] * d[a]);
        }
        for (int b = 2; b < R_; ++b) {
            double *Qb = row(Q_, b), *dQb = row(dQ_, b);
#pragma omp simd
            for (int a = 0; a < na; ++a) {
                const double T2 = 2.0 * xi[a] * T1[a] - T0[a];
                const double dT2 = 2.0 * T1[a] + 2.0 * xi[a] * dT1[a] - dT0[a];
                Qb[a] = scale * T2 * d[a] * d[a];
                dQb[a] = scale * (dT2 * dxi * d[a] * d[a] - 2.0 * T2 * d[a]);
                T0[a] = T1[a]; T1[a] = T2; dT0[a] = dT1[a]; dT1[a] = dT2;
            }
        }
    }
    // radial functions f_μ = Σ_β c^{ab}_{μβ} Q_β for the pair's species
    const int S = basis_.species_count;
    for (int mu = 0; mu < K_; ++mu) {
        double *f = row(f_, mu), *df = row(df_, mu);
    #pragma omp simd
        for (int a = 0; a < na; ++a) { f[a] = 0.0; df[a] = 0.0; }
        for (int b = 0; b < R_; ++b) {
            const double *Qb = row(Q_, b), *dQb = row(dQ_, b);
#pragma omp simd
            for (int a = 0; a < na; ++a) {
                const double c = theta_[(slot.type * S + slot.nb_type[a]) * K_ * R_ + mu * R_ + b];
                f[a] += c * Qb[a];
                df[a] += c * dQb[a];
            }
        }
    }
    // powers of the unit-vector components, then the distinct monomials and their u-gradients
    for (int c = 0; c < 3; ++c) {
        const double* u = c == 0 ? ux : (c == 1 ? uy : uz);
        double* p0 = row(powers_, c * D_);
    #pragma omp simd
        for (int a = 0; a < na; ++a) p0[a] = 1.0;
        for (int k = 1; k < D_; ++k) {
            const double* prev = row(powers_, c * D_ + k - 1);
            double* cur = row(powers_, c * D_ + k);
#pragma omp simd
            for (int a = 0; a < na; ++a) cur[a] = prev[a] * u[a];
        }
    }
}

void SiteKernel::pair_gradients(double* g) { moment_gradients(adj_.data(), g); }

void SiteKernel::moment_gradients(const double* alpha_of, double* g) {
    const Slot& slot = slots_[lane_];
    const double *inv_r = row(inv_r_, 0), *ux = row(ux_, 0), *uy = row(uy_, 0), *uz = row(uz_, 0);
    // g = Σ_k adj_k ∂m_k/∂r with ∂(f M)/∂r = f' M u + f (∇_u M − ν M u)/r; per monomial the adjoints are first
    // gathered into a = Σ adj_k f_μk and b = Σ adj_k f'_μk, so each monomial gradient is used once.
    const int na = slot.n_act;
    double *A = row(acc_, 0), *C = row(acc_, 1), *Gx = row(acc_, 2), *Gy = row(acc_, 3), *Gz = row(acc_, 4);
    double *af = row(acc_, 5), *adf = row(acc_, 6);
#pragma omp simd
    for (int a = 0; a < na; ++a) A[a] = C[a] = Gx[a] = Gy[a] = Gz[a] = 0.0;
    for (std::size_t d = 0; d < monomials_.size(); ++d) {
        bool any = false;
#pragma omp simd
        for (int a = 0; a < na; ++a) af[a] = adf[a] = 0.0;
        for (int k = group_begin_[d]; k < group_begin_[d + 1]; ++k) {
            const double alpha = alpha_of[group_moment_[k]];
            if (alpha == 0.0) continue;
            any = true;
            const double *f = row(f_, group_mu_[k]), *df = row(df_, group_mu_[k]);
#pragma omp simd
            for (int a = 0; a < na; ++a) {
                af[a] += alpha * f[a];
                adf[a] += alpha * df[a];
            }
        }
        if (!any) continue;
        const int p = monomials_[d][0], q = monomials_[d][1], w = monomials_[d][2];
        const double *X = row(powers_, p), *Y = row(powers_, D_ + q), *Z = row(powers_, 2 * D_ + w);
        const double *Xm = row(powers_, std::max(p - 1, 0)), *Ym = row(powers_, D_ + std::max(q - 1, 0)),
                     *Zm = row(powers_, 2 * D_ + std::max(w - 1, 0));
        const double nu = degree_[d];
#pragma omp simd
        for (int a = 0; a < na; ++a) {
            const double yz = Y[a] * Z[a], xa = X[a] * af[a];
            const double M = X[a] * yz;
            A[a] += adf[a] * M;
            C[a] += nu * af[a] * M;
            Gx[a] += p * af[a] * Xm[a] * yz;
            Gy[a] += q * xa * Ym[a] * Z[a];
            Gz[a] += w * xa * Y[a] * Zm[a];
        }
    }
    std::fill(g, g + 3 * slot.n_nb, 0.0);
    for (int a = 0; a < na; ++a) {
        const double radial = A[a] - C[a] * inv_r[a];
        double* gn = g + 3 * slot.active[a];
        gn[0] = radial * ux[a] + Gx[a] * inv_r[a];
        gn[1] = radial * uy[a] + Gy[a] * inv_r[a];
        gn[2] = radial * uz[a] + Gz[a] * inv_r[a];
    }
}

int SiteKernel::jacobian_tile() const {
    const std::size_t budget = std::size_t{1} << 20,
                      per_neighbour = 3 * sizeof(double) * (basis_.basic.size() + basis_.mapping.size());
    const int tile = static_cast<int>(budget / per_neighbour) / kPad * kPad;
    return std::max(kPad, tile);
}

void SiteKernel::basic_tangents(int a0, int w, int block, double* table, int per) {
    // ∂(f_μ M)/∂r = (f'_μ − ν f_μ/r) M u + f_μ ∇_u M / r (as in moment_gradients); row k is basic moment k
    const double *inv_r = row(inv_r_, 0) + a0, *ux = row(ux_, 0) + a0, *uy = row(uy_, 0) + a0,
                 *uz = row(uz_, 0) + a0;
    double *M = row(acc_, 4), *gx = row(acc_, 5), *gy = row(acc_, 6), *gz = row(acc_, 7);
    for (std::size_t d = 0; d < monomials_.size(); ++d) {
        monomial_row(static_cast<int>(d), M);
        monomial_gradient_rows(static_cast<int>(d), gx, gy, gz);
        const double nu = degree_[d];
        const double *Ma = M + a0, *gxa = gx + a0, *gya = gy + a0, *gza = gz + a0;
        for (int k = group_begin_[d]; k < group_begin_[d + 1]; ++k) {
            const double *f = row(f_, group_mu_[k]) + a0, *df = row(df_, group_mu_[k]) + a0;
            double* T = table + static_cast<std::size_t>(group_moment_[k]) * per;
#pragma omp simd
            for (int a = 0; a < w; ++a) {
                const double radial = (df[a] - nu * f[a] * inv_r[a]) * Ma[a], fr = f[a] * inv_r[a];
                T[a] = radial * ux[a] + fr * gxa[a];
                T[block + a] = radial * uy[a] + fr * gya[a];
                T[2 * block + a] = radial * uz[a] + fr * gza[a];
            }
            for (int c = 0; c < 3; ++c)
                for (int a = w; a < block; ++a) T[c * block + a] = 0.0;
            for (int q = 3 * block; q < per; ++q) T[q] = 0.0;
        }
    }
}

void SiteKernel::basis_chain() {
    // d(m_l m_r) = m_r dm_l + m_l dm_r over each moment's basic moments only: the products' sparse forward mode,
    // for the whole batch at once
    Lanes* v = chain_.data();
    const int* offsets = basis_.chain_offsets.data();
    for (std::size_t r = 0; r < basis_.runs.size(); ++r) {
        const ProductRun& run = basis_.runs[r];
        Lanes* target = v + offsets[run.target];
        if (run_assigns_[r]) std::fill(target, v + offsets[run.target + 1], Lanes{});
        for (int k = run.begin; k < run.end; ++k) {
            const auto& t = basis_.products[k];
            const int* pos = &basis_.chain_positions[basis_.chain_product_offsets[k]];
            const Lanes a = t.mult * batch_m_[t.right], b = t.mult * batch_m_[t.left];
            const Lanes *dl = v + offsets[t.left], *dr = v + offsets[t.right];
            const int nl = offsets[t.left + 1] - offsets[t.left], nr = offsets[t.right + 1] - offsets[t.right];
            for (int j = 0; j < nl; ++j) target[pos[j]] += a * dl[j];
            pos += nl;
            for (int j = 0; j < nr; ++j) target[pos[j]] += b * dr[j];
        }
    }
    chain_current_ = true;
}

template <int NC>
void SiteKernel::basis_rows_block(int per, int q0) {
    constexpr int kVector = 8;
    const int* offsets = basis_.chain_offsets.data();
    const int M = static_cast<int>(basis_.mapping.size());
    for (int alpha = 0; alpha < M; ++alpha) {
        const int x = basis_.mapping[alpha];
        Chunk sum[NC];
        for (int c = 0; c < NC; ++c) sum[c] = Chunk{};
        for (int j = offsets[x]; j < offsets[x + 1]; ++j) {
            const double d = chain_[j][lane_];
            const double* row = &basic_jac_[static_cast<std::size_t>(basis_.chain_basic[j]) * per + q0];
#pragma GCC unroll 6
            for (int c = 0; c < NC; ++c) sum[c] += d * load_chunk(row + c * kVector);
        }
        double* out = &jac_[static_cast<std::size_t>(alpha) * per + q0];
        for (int c = 0; c < NC; ++c) std::memcpy(out + c * kVector, &sum[c], sizeof sum[c]);
    }
}

void SiteKernel::basis_rows(int per) {
    constexpr int kVector = 8, kMaxBlock = 6;
    if (!chain_current_) basis_chain();
    if (jac_.size() < static_cast<std::size_t>(per) * basis_.mapping.size())
        jac_.resize(static_cast<std::size_t>(per) * basis_.mapping.size());
    // ∂B_α = Σ_b (∂B_α/∂m_b) ∂m_b over the basic moments b that B_α depends on, summed in registers up to six
    // chunks at a time; block by block of columns, so that a block of every basic row stays in the L2 cache
    const int chunks = per / kVector, blocks = (chunks + kMaxBlock - 1) / kMaxBlock;
    for (int b = 0, q0 = 0; b < blocks; ++b) {
        // as few blocks of at most kMaxBlock chunks as possible, of about equal size
        const int size = chunks / blocks + (b < chunks % blocks ? 1 : 0);
        switch (size) {
            case 1: basis_rows_block<1>(per, q0); break;
            case 2: basis_rows_block<2>(per, q0); break;
            case 3: basis_rows_block<3>(per, q0); break;
            case 4: basis_rows_block<4>(per, q0); break;
            case 5: basis_rows_block<5>(per, q0); break;
            default: basis_rows_block<6>(per, q0); break;
        }
        q0 += size * kVector;
    }
}

const double* SiteKernel::basis_jacobian(int a0, int w) {
    // a row holds the x, y and z blocks of w values back to back, padded to whole 8-double chunks
    const int per = (3 * w + 7) / 8 * 8;
    jac_stride_ = w;
    jac_row_ = per;
    if (basic_jac_.size() < static_cast<std::size_t>(per) * basis_.basic.size())
        basic_jac_.resize(static_cast<std::size_t>(per) * basis_.basic.size());
    basic_tangents(a0, w, w, basic_jac_.data(), per);
    basis_rows(per);
    return jac_.data();
}

namespace {

// T[c], T[K + c], T[2K + c] = the sums of tx, ty, tz over the images members[c·L …] of atom column c; L = IMAGES,
// or `images` for IMAGES = 0 (a fixed count unrolls: most columns of a small cell have one to four images)
template <int IMAGES>
void sum_images(const double* tx, const double* ty, const double* tz, const int* members, int K, double* T,
                int images = IMAGES) {
    const int L = IMAGES ? IMAGES : images;
    for (int c = 0; c < K; ++c) {
        const int* m = members + c * L;
        double sx = 0.0, sy = 0.0, sz = 0.0;
#pragma GCC unroll 4
        for (int l = 0; l < L; ++l) {
            sx += tx[m[l]];
            sy += ty[m[l]];
            sz += tz[m[l]];
        }
        T[c] = sx;
        T[K + c] = sy;
        T[2 * K + c] = sz;
    }
}

}  // namespace

const double* SiteKernel::basis_jacobian_atoms(const int* members, int images, int K) {
    // the neighbours' rows with one zero after each component block: members[c·images + l] = na (no neighbour)
    // pads the columns of atoms with fewer images
    const int na = n_active(), block = na + 1, per_n = (3 * block + 7) / 8 * 8, per = (3 * K + kStrains + 7) / 8 * 8;
    const std::size_t n_basic = basis_.basic.size();
    jac_stride_ = K;
    jac_row_ = per;
    if (basic_jac_.size() < static_cast<std::size_t>(per) * n_basic)
        basic_jac_.resize(static_cast<std::size_t>(per) * n_basic);
    if (basic_tan_.size() < per_n * n_basic) basic_tan_.resize(per_n * n_basic);
    basic_tangents(0, na, block, basic_tan_.data(), per_n);
    // r_ij = r u, its components per neighbour
    double *x = row(acc_, 4), *y = row(acc_, 5), *z = row(acc_, 6);
    {
        const double *r = row(r_, 0), *ux = row(ux_, 0), *uy = row(uy_, 0), *uz = row(uz_, 0);
        for (int a = 0; a < na; ++a) {
            x[a] = r[a] * ux[a];
            y[a] = r[a] * uy[a];
            z[a] = r[a] * uz[a];
        }
    }
    for (std::size_t k = 0; k < n_basic; ++k) {
        const double *tx = &basic_tan_[k * per_n], *ty = tx + block, *tz = ty + block;
        double* T = &basic_jac_[k * per];
        switch (images) {
            case 1: sum_images<1>(tx, ty, tz, members, K, T); break;
            case 2: sum_images<2>(tx, ty, tz, members, K, T); break;
            case 3: sum_images<3>(tx, ty, tz, members, K, T); break;
            case 4: sum_images<4>(tx, ty, tz, members, K, T); break;
            default: sum_images<0>(tx, ty, tz, members, K, T, images); break;
        }
        double e0 = 0.0, e1 = 0.0, e2 = 0.0, e3 = 0.0, e4 = 0.0, e5 = 0.0;
#pragma omp simd reduction(+ : e0, e1, e2, e3, e4, e5)
        for (int a = 0; a < na; ++a) {
            e0 += tx[a] * x[a];
            e1 += ty[a] * y[a];
            e2 += tz[a] * z[a];
            e3 += ty[a] * z[a] + tz[a] * y[a];
            e4 += tx[a] * z[a] + tz[a] * x[a];
            e5 += tx[a] * y[a] + ty[a] * x[a];
        }
        double* strain = T + 3 * K;
        strain[0] = e0;
        strain[1] = e1;
        strain[2] = e2;
        strain[3] = 0.5 * e3;
        strain[4] = 0.5 * e4;
        strain[5] = 0.5 * e5;
        for (int q = 3 * K + kStrains; q < per; ++q) T[q] = 0.0;
    }
    basis_rows(per);
    return jac_.data();
}

void SiteKernel::vjp_batch(int count, double e, const double* const* W, double* grad) {
    tangents_batch(count, W);
    tangent_adjoints(e);
    theta_gradient_batch(count, e, grad);
}

void SiteKernel::tangents_batch(int count, const double* const* W) {
    // tangent of every basic moment along the neighbour displacements W:
    //   ṁ_k = Σ_j f'_μ M (W·u) + f_μ (W·∇_u M − ν M W·u)/r  =  Σ_j f'_μ t1_d + f_μ t2_d
    std::fill(batch_tan_.begin(), batch_tan_.end(), Lanes{});
    for (int lane = 0; lane < count; ++lane) {
        lane_ = lane;
        const Slot& slot = slots_[lane];
        const int na = slot.n_act;
        const double *inv_r = row(inv_r_, 0), *ux = row(ux_, 0), *uy = row(uy_, 0), *uz = row(uz_, 0);
        double *wx = row(acc_, 0), *wy = row(acc_, 1), *wz = row(acc_, 2), *wu = row(acc_, 3);
        for (int a = 0; a < na; ++a) {
            const double* w = W[lane] + 3 * slot.active[a];
            wx[a] = w[0]; wy[a] = w[1]; wz[a] = w[2];
            wu[a] = w[0] * ux[a] + w[1] * uy[a] + w[2] * uz[a];
        }
        double *M = row(acc_, 4), *gx = row(acc_, 5), *gy = row(acc_, 6), *gz = row(acc_, 7);
        for (std::size_t d = 0; d < monomials_.size(); ++d) {
            const double nu = degree_[d];
            monomial_row(d, M);
            monomial_gradient_rows(d, gx, gy, gz);
            double *t1 = row(t1_, d), *t2 = row(t2_, d);
#pragma omp simd
            for (int a = 0; a < na; ++a) {
                t1[a] = M[a] * wu[a];
                t2[a] = (wx[a] * gx[a] + wy[a] * gy[a] + wz[a] * gz[a] - nu * t1[a]) * inv_r[a];
            }
            for (int k = group_begin_[d]; k < group_begin_[d + 1]; ++k) {
                const double *f = row(f_, group_mu_[k]), *df = row(df_, group_mu_[k]);
                double sum = 0.0;
#pragma omp simd reduction(+ : sum)
                for (int a = 0; a < na; ++a) sum += df[a] * t1[a] + f[a] * t2[a];
                batch_tan_[group_moment_[k]][lane] = sum;
            }
        }
    }
    const Lanes* m = batch_m_.data();
    Lanes* tan = batch_tan_.data();
    for (const auto& run : basis_.runs) {
        Lanes sum{};
        for (int k = run.begin; k < run.end; ++k) {
            const auto& t = basis_.products[k];
            sum += static_cast<double>(t.mult) * (tan[t.left] * m[t.right] + m[t.left] * tan[t.right]);
        }
        tan[run.target] += sum;
    }
}

void SiteKernel::tangent_adjoints(double e) {
    const Lanes *m = batch_m_.data(), *adj = batch_adj_.data(), *tan = batch_tan_.data();
    const double* c = theta_ + basis_.moment_offset();
    // reverse pass through the products for the adjoint of the moments in Φ; adj (= dV/dm) is the adjoint of
    // the tangents
    Lanes* tan_adj = batch_tan_adj_.data();
    std::fill(batch_tan_adj_.begin(), batch_tan_adj_.end(), Lanes{});
    for (std::size_t a = 0; a < basis_.mapping.size(); ++a) tan_adj[basis_.mapping[a]] += e * c[a];
    const int *use_target = basis_.use_target.data(), *use_other = basis_.use_other.data();
    const double* mult = basis_.use_mult.data();
    for (int x : basis_.reverse_order) {
        Lanes sum{};
        for (int u = basis_.use_offsets[x]; u < basis_.use_offsets[x + 1]; ++u)
            sum += mult[u] * (tan_adj[use_target[u]] * m[use_other[u]] + adj[use_target[u]] * tan[use_other[u]]);
        tan_adj[x] += sum;
    }
}

void SiteKernel::theta_gradient_batch(int count, double e, double* grad) {
    const Lanes *m = batch_m_.data(), *adj = batch_adj_.data(), *tan = batch_tan_.data(),
                *tan_adj = batch_tan_adj_.data();
    // species and moment coefficients enter Φ = e·V + Σ W·g linearly
    double* gc = grad + basis_.moment_offset();
    for (int lane = 0; lane < count; ++lane) {
        grad[basis_.species_offset() + slots_[lane].type] += e;
        for (std::size_t a = 0; a < basis_.mapping.size(); ++a) {
            const int k = basis_.mapping[a];
            gc[a] += e * m[k][lane] + tan[k][lane];
        }
    }
    // radial coefficients: Φ depends on c^{ab}_{μβ} through f_μ (weight Q_β) and f'_μ (weight Q'_β)
    const int S = basis_.species_count;
    for (int lane = 0; lane < count; ++lane) {
        lane_ = lane;
        const Slot& slot = slots_[lane];
        const int na = slot.n_act;
        double* M = row(acc_, 4);
        std::fill(row(P_, 0), row(P_, 0) + K_ * stride_, 0.0);
        std::fill(row(Dmu_, 0), row(Dmu_, 0) + K_ * stride_, 0.0);
        for (std::size_t d = 0; d < monomials_.size(); ++d) {
            monomial_row(d, M);
            const double *t1 = row(t1_, d), *t2 = row(t2_, d);
            for (int k = group_begin_[d]; k < group_begin_[d + 1]; ++k) {
                const double ta = tan_adj[group_moment_[k]][lane], ad = adj[group_moment_[k]][lane];
                double *P = row(P_, group_mu_[k]), *Dm = row(Dmu_, group_mu_[k]);
#pragma omp simd
                for (int a = 0; a < na; ++a) {
                    P[a] += ta * M[a] + ad * t2[a];
                    Dm[a] += ad * t1[a];
                }
            }
        }
        for (int a = 0; a < na; ++a) {
            double* gr = grad + (slot.type * S + slot.nb_type[a]) * K_ * R_;
            for (int mu = 0; mu < K_; ++mu) {
                const double p = row(P_, mu)[a], dm = row(Dmu_, mu)[a];
                for (int b = 0; b < R_; ++b) gr[mu * R_ + b] += p * row(Q_, b)[a] + dm * row(dQ_, b)[a];
            }
        }
    }
}

void SiteKernel::radial_second_derivatives() {
    // Q''_β = s·(T''_β ξ'² d² − 4 T'_β ξ' d + 2 T_β), d = R_cut − r, by the Chebyshev recurrence
    const Slot& slot = slots_[lane_];
    const int na = slot.n_act;
    const double rc = basis_.max_dist, rmin = basis_.min_dist, scale = basis_.scaling, dxi = 2.0 / (rc - rmin);
    const double* r = row(r_, 0);
    double *xi = row(acc_, 16), *d = row(acc_, 17), *T0 = row(acc_, 18), *T1 = row(acc_, 19), *dT0 = row(acc_, 20),
           *dT1 = row(acc_, 21), *ddT0 = row(acc_, 22), *ddT1 = row(acc_, 23);
    double *Q0 = row(ddQ_, 0), *Q1 = row(ddQ_, std::min(1, R_ - 1));
#pragma omp simd
    for (int a = 0; a < na; ++a) {
        xi[a] = (2.0 * r[a] - rmin - rc) / (rc - rmin);
        d[a] = rc - r[a];
        T0[a] = 1.0; T1[a] = xi[a]; dT0[a] = 0.0; dT1[a] = 1.0; ddT0[a] = 0.0; ddT1[a] = 0.0;
        Q0[a] = 2.0 * scale;
    }
    if (R_ > 1) {
#pragma omp simd
        for (int a = 0; a < na; ++a) Q1[a] = scale * (-4.0 * dxi * d[a] + 2.0 * xi[a]);
    }
    for (int b = 2; b < R_; ++b) {
        double* Qb = row(ddQ_, b);
#pragma omp simd
        for (int a = 0; a < na; ++a) {
            const double T2 = 2.0 * xi[a] * T1[a] - T0[a];
            const double dT2 = 2.0 * T1[a] + 2.0 * xi[a] * dT1[a] - dT0[a];
            const double ddT2 = 4.0 * dT1[a] + 2.0 * xi[a] * ddT1[a] - ddT0[a];
            Qb[a] = scale * (ddT2 * dxi * dxi * d[a] * d[a] - 4.0 * dT2 * dxi * d[a] + 2.0 * T2);
            T0[a] = T1[a]; T1[a] = T2; dT0[a] = dT1[a]; dT1[a] = dT2; ddT0[a] = ddT1[a]; ddT1[a] = ddT2;
        }
    }
    const int S = basis_.species_count;
    for (int mu = 0; mu < K_; ++mu) {
        double* ddf = row(ddf_, mu);
#pragma omp simd
        for (int a = 0; a < na; ++a) ddf[a] = 0.0;
        for (int b = 0; b < R_; ++b) {
            const double* Qb = row(ddQ_, b);
            for (int a = 0; a < na; ++a)
                ddf[a] += theta_[(slot.type * S + slot.nb_type[a]) * K_ * R_ + mu * R_ + b] * Qb[a];
        }
    }
}

void SiteKernel::second_order_batch(int count, const double* const* W, double* grad, double* const* H) {
    tangents_batch(count, W);
    tangent_adjoints(0.0);
    if (grad) theta_gradient_batch(count, 0.0, grad);
    for (int lane = 0; lane < count; ++lane) {
        lane_ = lane;
        const Slot& slot = slots_[lane];
        const int na = slot.n_act;
        // dΦ/dr = Σ_k (∂Φ/∂m_k) ∂m_k/∂r  +  Σ_k adj_k ∇²φ_k W, φ_k = f_μ(r) M(u) the per-neighbour term of m_k
        for (std::size_t k = 0; k < lane_tan_adj_.size(); ++k) lane_tan_adj_[k] = batch_tan_adj_[k][lane];
        moment_gradients(lane_tan_adj_.data(), H[lane]);
        radial_second_derivatives();
        // With φ = h(r) P(r), P = r^ν M the monomial in the components of r and h = f r^{−ν}:
        //   ∇²φ W = A2 (u·W) M u + A1 [(∇_u M·W) u + (u·W) ∇_u M + M W − (u·W) M u] + A0 ∇²_u M W,
        //   A2 = f'' − 2ν f'/r + ν(ν+1) f/r², A1 = f'/r − ν f/r², A0 = f/r²  (∇_u: formal monomial derivatives)
        const double *inv_r = row(inv_r_, 0), *ux = row(ux_, 0), *uy = row(uy_, 0), *uz = row(uz_, 0);
        double *wx = row(acc_, 7), *wy = row(acc_, 8), *wz = row(acc_, 9), *wu = row(acc_, 10);
        double *af = row(acc_, 11), *adf = row(acc_, 12), *addf = row(acc_, 13);
        double *hx = row(acc_, 14), *hy = row(acc_, 15), *hz = row(acc_, 16);
        for (int a = 0; a < na; ++a) {
            const double* w = W[lane] + 3 * slot.active[a];
            wx[a] = w[0]; wy[a] = w[1]; wz[a] = w[2];
            wu[a] = w[0] * ux[a] + w[1] * uy[a] + w[2] * uz[a];
            hx[a] = hy[a] = hz[a] = 0.0;
        }
        for (std::size_t dm = 0; dm < monomials_.size(); ++dm) {
            bool any = false;
#pragma omp simd
            for (int a = 0; a < na; ++a) af[a] = adf[a] = addf[a] = 0.0;
            for (int k = group_begin_[dm]; k < group_begin_[dm + 1]; ++k) {
                const double ad = batch_adj_[group_moment_[k]][lane];
                if (ad == 0.0) continue;
                any = true;
                const double *f = row(f_, group_mu_[k]), *df = row(df_, group_mu_[k]), *ddf = row(ddf_, group_mu_[k]);
#pragma omp simd
                for (int a = 0; a < na; ++a) {
                    af[a] += ad * f[a];
                    adf[a] += ad * df[a];
                    addf[a] += ad * ddf[a];
                }
            }
            if (!any) continue;
            const int p = monomials_[dm][0], q = monomials_[dm][1], w = monomials_[dm][2];
            const auto power = [&](int c, int k) { return row(powers_, c * D_ + std::max(k, 0)); };
            const double *X = power(0, p), *Y = power(1, q), *Z = power(2, w);
            const double *Xm = power(0, p - 1), *Ym = power(1, q - 1), *Zm = power(2, w - 1);
            const double *Xmm = power(0, p - 2), *Ymm = power(1, q - 2), *Zmm = power(2, w - 2);
            const double nu = degree_[dm];
#pragma omp simd
            for (int a = 0; a < na; ++a) {
                const double M = X[a] * Y[a] * Z[a];
                const double Gx = p * Xm[a] * Y[a] * Z[a], Gy = q * X[a] * Ym[a] * Z[a], Gz = w * X[a] * Y[a] * Zm[a];
                const double Hxx = p * (p - 1) * Xmm[a] * Y[a] * Z[a], Hyy = q * (q - 1) * X[a] * Ymm[a] * Z[a],
                             Hzz = w * (w - 1) * X[a] * Y[a] * Zmm[a], Hxy = p * q * Xm[a] * Ym[a] * Z[a],
                             Hxz = p * w * Xm[a] * Y[a] * Zm[a], Hyz = q * w * X[a] * Ym[a] * Zm[a];
                const double ir = inv_r[a], ir2 = ir * ir;
                const double A2 = addf[a] - 2.0 * nu * adf[a] * ir + nu * (nu + 1.0) * af[a] * ir2;
                const double A1 = adf[a] * ir - nu * af[a] * ir2, A0 = af[a] * ir2;
                const double gw = Gx * wx[a] + Gy * wy[a] + Gz * wz[a];
                const double radial = (A2 - A1) * wu[a] * M + A1 * gw;
                hx[a] += radial * ux[a] + A1 * (wu[a] * Gx + M * wx[a]) + A0 * (Hxx * wx[a] + Hxy * wy[a] + Hxz * wz[a]);
                hy[a] += radial * uy[a] + A1 * (wu[a] * Gy + M * wy[a]) + A0 * (Hxy * wx[a] + Hyy * wy[a] + Hyz * wz[a]);
                hz[a] += radial * uz[a] + A1 * (wu[a] * Gz + M * wz[a]) + A0 * (Hxz * wx[a] + Hyz * wy[a] + Hzz * wz[a]);
            }
        }
        for (int a = 0; a < na; ++a) {
            double* h = H[lane] + 3 * slot.active[a];
            h[0] += hx[a];
            h[1] += hy[a];
            h[2] += hz[a];
        }
    }
}

void evaluate_structure(SiteKernel& kernel, const Structure& s, double* site_energies, double* forces,
                        double* plus_stress, std::vector<double>* state) {
    const std::size_t per_atom = 2 * static_cast<std::size_t>(kernel.moments_count());
    if (state) state->resize(per_atom * s.n_atoms);
    std::fill(forces, forces + 3 * s.n_atoms, 0.0);
    std::fill(plus_stress, plus_stress + 9, 0.0);
    std::vector<double> g;
    for (int first = 0; first < s.n_atoms; first += SiteKernel::kLanes) {
        const int count = std::min(SiteKernel::kLanes, s.n_atoms - first);
        kernel.forward_batch(s, first, count, site_energies + first);
        for (int lane = 0; lane < count; ++lane) {
            const int i = first + lane;
            kernel.select(s, i, lane);
            if (state) kernel.save(&(*state)[per_atom * i], &(*state)[per_atom * i + per_atom / 2]);
            g.resize(3 * kernel.n_neighbors());
            kernel.pair_gradients(g.data());
            scatter_pair_gradients(s, i, g.data(), forces, plus_stress);
        }
    }
}

void evaluate_structure_parallel(const Basis& basis, const double* theta, const Structure& s,
                                 double* site_energies, double* forces, double* plus_stress, double* atom_virials,
                                 int n_threads) {
    evaluate_pairs_parallel<SiteKernel>(
        basis, theta, s, SiteKernel::kLanes,
        [&](SiteKernel& kernel, int first, int count, double* g) {
            kernel.forward_batch(s, first, count, site_energies + first);
            for (int lane = 0; lane < count; ++lane) {
                kernel.select(s, first + lane, lane);
                kernel.pair_gradients(g + 3 * static_cast<std::size_t>(s.offsets[first + lane]));
            }
        },
        forces, plus_stress, atom_virials, n_threads);
}

void structure_vjp(SiteKernel& kernel, const Structure& s, double e, const double* phi, const double* sigma,
                   double* grad, const std::vector<double>* state) {
    constexpr int L = SiteKernel::kLanes;
    std::vector<double> W[L];
    const double* W_of[L];
    double V[L];
    for (int first = 0; first < s.n_atoms; first += L) {
        const int count = std::min(L, s.n_atoms - first);
        bool zero = e == 0.0;
        for (int lane = 0; lane < count; ++lane) {
            zero = !pair_cotangents(s, first + lane, phi, sigma, W[lane]) && zero;
            W_of[lane] = W[lane].data();
        }
        // a zero cotangent contributes nothing: in large cells a Jacobian row (one force component) touches
        // only the atom's neighbourhood
        if (zero) continue;
        if (state) kernel.load_batch(s, first, count, state->data());
        else kernel.forward_batch(s, first, count, V);
        kernel.vjp_batch(count, e, W_of, grad);
    }
}

void structure_jacobian(SiteKernel& kernel, const Structure& s, const std::vector<int>& rows, double* J,
                        const std::vector<double>& state) {
    constexpr int L = SiteKernel::kLanes;
    const int np = kernel.n_params(), n3 = 3 * s.n_atoms;
    std::vector<double> W[L];
    const double* W_of[L];
    for (int first = 0; first < s.n_atoms; first += L) {
        const int count = std::min(L, s.n_atoms - first);
        kernel.load_batch(s, first, count, state.data());
        for (std::size_t t = 0; t < rows.size(); ++t) {
            const int q = rows[t];
            const double e = q == 0 ? 1.0 : 0.0;
            bool zero = e == 0.0;
            for (int lane = 0; lane < count; ++lane) {
                // the unit cotangent's W_ij = ∂output/∂g_ij (see structure_vjp)
                const int i = first + lane, begin = s.offsets[i], nn = s.offsets[i + 1] - begin;
                W[lane].assign(3 * nn, 0.0);
                if (q >= 1 && q <= n3) {
                    const int atom = (q - 1) / 3, a = (q - 1) % 3;
                    for (int n = 0; n < nn; ++n) {
                        const double v = (i == atom ? 1.0 : 0.0) - (s.neighbors[begin + n] == atom ? 1.0 : 0.0);
                        W[lane][3 * n + a] = v;
                        zero = zero && v == 0.0;
                    }
                } else if (q > n3) {
                    const int a = (q - 1 - n3) / 3, b = (q - 1 - n3) % 3;
                    for (int n = 0; n < nn; ++n) {
                        W[lane][3 * n + a] = -s.vectors[3 * (begin + n) + b];
                        zero = zero && W[lane][3 * n + a] == 0.0;
                    }
                }
                W_of[lane] = W[lane].data();
            }
            if (!zero) kernel.vjp_batch(count, e, W_of, J + t * static_cast<std::size_t>(np));
        }
    }
}

void structure_force_vjp(SiteKernel& kernel, const Structure& s, const double* a, double* grad_theta,
                         double* grad_x) {
    constexpr int L = SiteKernel::kLanes;
    std::vector<double> W[L], H[L];
    const double* W_of[L];
    double* H_of[L];
    double V[L];
    std::fill(grad_x, grad_x + 3 * s.n_atoms, 0.0);
    for (int first = 0; first < s.n_atoms; first += L) {
        const int count = std::min(L, s.n_atoms - first);
        bool zero = true;
        for (int lane = 0; lane < count; ++lane) {
            // a·F = Σ_i Σ_j (a_i − a_j)·g_ij (see structure_vjp)
            const int i = first + lane, begin = s.offsets[i], nn = s.offsets[i + 1] - begin;
            W[lane].resize(3 * nn);
            H[lane].resize(3 * nn);
            for (int n = 0; n < nn; ++n) {
                const int j = s.neighbors[begin + n];
                for (int c = 0; c < 3; ++c) {
                    W[lane][3 * n + c] = a[3 * i + c] - a[3 * j + c];
                    zero = zero && W[lane][3 * n + c] == 0.0;
                }
            }
            W_of[lane] = W[lane].data();
            H_of[lane] = H[lane].data();
        }
        if (zero) continue;
        kernel.forward_batch(s, first, count, V);
        kernel.second_order_batch(count, W_of, grad_theta, H_of);
        // r_ij = X_j − X_i + shift
        for (int lane = 0; lane < count; ++lane) {
            const int i = first + lane, begin = s.offsets[i], nn = s.offsets[i + 1] - begin;
            for (int n = 0; n < nn; ++n) {
                const int j = s.neighbors[begin + n];
                for (int c = 0; c < 3; ++c) {
                    grad_x[3 * j + c] += H[lane][3 * n + c];
                    grad_x[3 * i + c] -= H[lane][3 * n + c];
                }
            }
        }
    }
}

}  // namespace mtpfit
