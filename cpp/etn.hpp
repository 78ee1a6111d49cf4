// An ETN-style equivariant tensor-network potential: this package's own definition of the model of GitHub issue 19,
// after the idea of Hodapp & Shapeev, "Equivariant Tensor Network Potentials", arXiv:2304.08226 (no public
// specification of the exact form exists; what follows is the definition, and the code implements exactly it).
//
// Hyper-parameters: species count S; radial basis size R (the Chebyshev basis Q_β(r), β < R, of MTP_SPEC §2 with
// min_dist, max_dist = cutoff and scaling 1); L, the largest angular order; N_c channels; d ≥ 2 copies of the
// features (body order d + 1); ranks r_1 … r_{d−1} ≥ 1.
//
// * Features of atom i: F_i[l,m,c] = Σ_j R_{l,c}(r_ij; z_i, z_j) Y_lm(r̂_ij), l = 0 … L, m = −l … l, c < N_c, over
//   the neighbours 0 < r_ij < max_dist; Y_lm the real orthonormal spherical harmonics (Y_l0 ∝ P_l(cos θ),
//   Y_{l,m>0} ∝ P_l^m(cos θ) cos mφ, Y_{l,−m} ∝ P_l^m(cos θ) sin mφ, without the Condon–Shortley phase);
//   R_{l,c}(r; a, b) = Σ_β W[a,b,l,c,β] Q_β(r).
// * Augmented features F̃: channels c < N_c are F; l = 0 has one more channel c = N_c with F̃[0,0,N_c] = 1, so that
//   every body order ≤ d + 1 appears. n_l = N_c + [l = 0].
// * Boundary core: h_1[l,m,a] = Σ_{c<n_l} A[l][c,a] F̃[l,m,c], a < r_1.
// * Interior cores k = 2 … d−1: h_k[l3,m3,a'] = Σ_{paths (l1,l2,l3)} Σ_{m1,m2} C^{l1 l2 l3}_{m1 m2 m3}
//   Σ_{a<r_{k−1}, c<n_{l2}} G_k[path][a,c,a'] h_{k−1}[l1,m1,a] F̃[l2,m2,c], a' < r_k. The paths are every
//   0 ≤ l1, l2, l3 ≤ L with |l1 − l2| ≤ l3 ≤ l1 + l2 and l1 + l2 + l3 even, in lexicographic order of (l1, l2, l3);
//   C the real Gaunt coefficients ∫ Y_{l1m1} Y_{l2m2} Y_{l3m3} dΩ, computed once by a quadrature exact for them
//   (Gauss–Legendre in cos θ × uniform φ). They couple O(3)-equivariantly, so V is invariant under rotations and
//   reflections. Each path has its own block G_k[path] of r_{k−1} × n_{l2} × r_k values.
// * Site energy: V_i = ξ_{z_i} + Σ_l Σ_m Σ_{a<r_{d−1}, c<n_l} B[l][a,c] h_{d−1}[l,m,a] F̃[l,m,c] (d = 2: no interior
//   core); E = Σ_i V_i.
// * Forces and PlusStress as for the MTP (MTP_SPEC §5): g_ij = ∂V_i/∂r_ij, F_i = Σ_j g_ij − Σ_k g_ki,
//   S = −Σ_i Σ_j g_ij ⊗ r_ij.
//
// θ = [radial W (a, b, l, c, β), S²(L+1)N_c R values | species ξ (S) | cores: A (core 1: l, c, a), G_2 … G_{d−1}
// (core k: path, a, c, a'), B (core d: l, a, c)].
//
// Derivatives. The pair gradients come from one reverse pass through the tensor train (∂V/∂F̃) and the feature
// derivatives. The vector–Jacobian product with respect to θ (MTP_SPEC §7) needs d/dθ [e·V_i + Σ_j W_ij·g_ij];
// Σ_j W_ij·g_ij is the directional derivative of V_i along the neighbour displacements W_ij, so the features are
// carried as dual numbers (F̃, Ḟ) with Ḟ = Σ_j W_ij·∂F̃/∂r_ij through the tensor train, and one reverse pass of the
// dual computation seeded with (e, 1) gives the derivative with respect to the cores and to (F̃, Ḟ), from which the
// radial coefficients' follows neighbour by neighbour. No second derivatives of Q or Y are needed.
#pragma once

#include <vector>

#include "structure.hpp"

namespace mtpfit {

struct EtnShape {
    int species_count = 1;      // S
    int radial_basis_size = 8;  // R
    int max_l = 2;              // L
    int channels = 4;           // N_c
    int copies = 2;             // d
    std::vector<int> ranks;     // r_1 … r_{d−1}
    double min_dist = 0.0;      // Å
    double max_dist = 5.0;      // Å, the cutoff
};

// One non-zero real Gaunt coefficient of a path; m indices are m + l (0 … 2l).
struct GauntEntry {
    int m1, m2, m3;
    double value;
};

struct EtnPath {
    int l1, l2, l3;
    std::vector<GauntEntry> entries;  // ordered by (m3, m1, m2)
};

class EtnModel {
public:
    static constexpr int kMaxL = 10;

    // Throws std::invalid_argument naming the offending hyper-parameter: S, R, N_c < 1; L outside 0 … kMaxL;
    // d < 2; not d − 1 ranks or a rank < 1; min_dist < 0, max_dist ≤ min_dist or either not finite; more than
    // 2³¹ − 1 parameters.
    explicit EtnModel(EtnShape shape);

    const EtnShape& shape() const { return shape_; }
    int species_count() const { return shape_.species_count; }
    int radial_basis_size() const { return shape_.radial_basis_size; }
    int max_l() const { return shape_.max_l; }
    int channels() const { return shape_.channels; }
    int copies() const { return shape_.copies; }
    int rank(int k) const { return shape_.ranks[k - 1]; }  // r_k, k = 1 … d−1
    double min_dist() const { return shape_.min_dist; }
    double max_dist() const { return shape_.max_dist; }

    // n_l: N_c, plus the constant channel at l = 0
    int channels_at(int l) const { return shape_.channels + (l == 0); }
    // F̃ is stored as [l][m][c]: block l starts at feature_offset(l) and holds (2l + 1) rows of n_l values
    int feature_offset(int l) const { return feature_offsets_[l]; }
    int n_features() const { return feature_offsets_.back(); }
    int n_harmonics() const { return (shape_.max_l + 1) * (shape_.max_l + 1); }  // index of Y_lm: l² + m + l

    // θ layout
    int n_radial() const { return species_offset_; }
    int radial_offset(int a, int b) const {
        return (a * shape_.species_count + b) * (shape_.max_l + 1) * shape_.channels * shape_.radial_basis_size;
    }
    int species_offset() const { return species_offset_; }
    int cores_offset() const { return core_offsets_.front(); }
    // core k = 1 … d: A (k = 1), G_k (1 < k < d), B (k = d)
    int core_offset(int k) const { return core_offsets_[k - 1]; }
    int core_size(int k) const { return core_offsets_[k] - core_offsets_[k - 1]; }
    // G_k[path p] of an interior core k
    int path_offset(int k, int p) const { return core_offsets_[k - 1] + path_offsets_[k - 1][p]; }
    // A[l] (core 1) and B[l] (core d)
    int boundary_offset(int l) const { return core_offsets_[0] + boundary_offsets_[l] * rank(1); }
    int final_offset(int l) const { return core_offsets_[shape_.copies - 1] + boundary_offsets_[l] * rank(shape_.copies - 1); }
    int n_params() const { return core_offsets_.back(); }

    const std::vector<EtnPath>& paths() const { return paths_; }
    // normalisation of Y_lm (index l² + m + l), used by real_harmonics()
    const std::vector<double>& harmonic_norms() const { return norms_; }

    // Y_lm(u) of a unit vector u for every l ≤ L (n_harmonics() values), and, if dY is not null, the gradient of the
    // polynomial extension of each Y_lm off the sphere (3 values per harmonic): the gradient with respect to a
    // neighbour vector r is (dY − (dY·u) u)/|r|.
    void real_harmonics(double x, double y, double z, double* Y, double* dY) const;

private:
    EtnShape shape_;
    std::vector<int> feature_offsets_;
    std::vector<int> boundary_offsets_;  // Σ_{l' < l} n_l'
    int species_offset_ = 0;
    std::vector<int> core_offsets_;      // d + 1 values
    std::vector<std::vector<int>> path_offsets_;
    std::vector<EtnPath> paths_;
    std::vector<double> norms_;
};

// Dual number v + ε d: the value and the derivative along the force/stress cotangent.
struct Dual {
    double v = 0.0, d = 0.0;
};

template <class T>
struct TrainState {
    std::vector<T> feat, featbar;          // F̃ and its adjoint, n_features()
    std::vector<std::vector<T>> h, hbar;   // h_k and its adjoint, k = 1 … d−1 at k − 1
    std::vector<T> coupled, coupledbar;    // every interior path's Σ_c F̃ G (etn.cpp) and one path's adjoint
    std::vector<T> work;                   // n_l values
};

// Per-thread evaluation state at a fixed θ: the current atom's neighbour tables (rows over its neighbours inside
// the cutoff, so the inner loops run over contiguous neighbours), its features, and the tensor train in plain and
// dual arithmetic. No allocation after the tables have grown to the widest neighbourhood.
class EtnKernel {
public:
    EtnKernel(const EtnModel& model, const double* theta);

    // Makes atom i of s the current atom: its neighbour tables and features (copied from `features`,
    // n_features() values saved by features(), instead of summed, when given).
    void load_atom(const Structure& s, int i, const double* features = nullptr);
    // V_i of the current atom (eV); with g, also g_ij = ∂V_i/∂r_ij, 3 values per neighbour of the atom (every one
    // in its list; zero beyond the cutoff), eV/Å.
    double site_energy(double* g);
    // Adds d/dθ [e·V_i + Σ_j W_ij·g_ij] of the current atom to grad (n_params()); W has 3 values per neighbour
    // of the atom (every one in its list).
    void site_vjp(double e, const double* W, double* grad);

    const double* features() const { return plain_.feat.data(); }
    int n_neighbors() const { return n_nb_; }
    int n_params() const { return model_.n_params(); }
    const EtnModel& model() const { return model_; }
    // Neighbours of atom i of s inside the cutoff.
    int count_active(const Structure& s, int i) const;
    // Sizes the neighbour tables for up to n_active neighbours inside the cutoff.
    void reserve(int n_active) { ensure_stride(n_active); }

private:
    void ensure_stride(int n_active);
    double* row(std::vector<double>& t, int r) { return t.data() + static_cast<std::size_t>(r) * stride_; }
    const double* row(const std::vector<double>& t, int r) const {
        return t.data() + static_cast<std::size_t>(r) * stride_;
    }

    const EtnModel& model_;
    const double* theta_;
    int stride_ = 0;
    int type_ = 0, n_nb_ = 0, n_act_ = 0;
    std::vector<int> active_, species_begin_;  // active neighbours by species; species t is [begin[t], begin[t+1])
    // rows over active neighbours: r, u (3), Q_β, Q'_β, Y_lm, ∇_r Y_lm (3 per harmonic), R_lc, R'_lc; for
    // site_vjp() Ẏ_lm = ∇_r Y_lm·W and the radial cotangent rows x, z; scratch rows
    std::vector<double> r_, u_, Q_, dQ_, Y_, dY_, rad_, drad_, ydot_, x_, z_, scratch_;
    std::vector<double> hv_, hg_;  // one neighbour's harmonics and their gradients
    TrainState<double> plain_;
    TrainState<Dual> dual_;
};

// Site energies (N), forces (N×3, eV/Å) and PlusStress (3×3 row-major, eV) of one configuration, as the MTP's
// evaluate_structure(). With `state`, every atom's features are kept there (N × n_features()) for a following
// structure_vjp() or structure_jacobian() at the same θ.
void evaluate_structure(EtnKernel& kernel, const Structure& s, double* site_energies, double* forces,
                        double* plus_stress, std::vector<double>* state = nullptr);

// evaluate_structure() on n_threads OpenMP threads with per-atom virials (may be null), identical bit for bit for
// every thread count: the MTP's evaluate_structure_parallel() contract (site_kernel.hpp).
void evaluate_structure_parallel(const EtnModel& model, const double* theta, const Structure& s,
                                 double* site_energies, double* forces, double* plus_stress, double* atom_virials,
                                 int n_threads);

// Adds to grad the vector–Jacobian product e·dE/dθ + Σ_i φ_i·dF_i/dθ + Σ_ab σ_ab dS_ab/dθ. phi (N×3) and sigma
// (3×3) may be null (zero cotangent). `state` from evaluate_structure() at the same θ spares the feature sums.
void structure_vjp(EtnKernel& kernel, const Structure& s, double e, const double* phi, const double* sigma,
                   double* grad, const std::vector<double>* state = nullptr);

// Rows of the Jacobian of (E, F (atom-major, 3N), PlusStress (9)) with respect to θ, as the MTP's
// structure_jacobian(): row t of J (n_params values, added to) is d(output rows[t])/dθ. Each atom's tables are
// built once for all rows. `state` from evaluate_structure() at the same θ.
void structure_jacobian(EtnKernel& kernel, const Structure& s, const std::vector<int>& rows, double* J,
                        const std::vector<double>& state);

}  // namespace mtpfit
