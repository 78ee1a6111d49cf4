// Site energy V_i of one atom, its derivatives with respect to the neighbour vectors, and the
// vector–Jacobian products with respect to θ (MTP_SPEC §4, §5, §7).
//
// Layout: every per-neighbour quantity is a row over the neighbours ([quantity][neighbour]), so the innermost
// loops run over contiguous neighbours and vectorise. The basic moments are grouped by their unit-vector
// monomial u_x^p u_y^q u_z^w: each monomial row (and its gradient rows) is built once from the power table
// and used at once by every basic moment of its group, so the working set stays in the L1 cache.
// Atoms are evaluated in batches of kLanes: the contraction graph (products and their adjoints) runs once for
// the whole batch with the moments stored as [moment][lane], so its gathers become vector operations. Each
// lane keeps its atom's neighbour tables.
#pragma once

#include <array>
#include <vector>

#include "basis.hpp"
#include "structure.hpp"

namespace mtpfit {

// Directions of a forward-mode pass over one atom's neighbourhood: basis_jacobian() (the neighbours'
// displacements) or basis_jacobian_atoms() (the distinct atoms' displacements and the strains); automatic: the
// caller's choice of the cheaper.
enum class TangentDirections { automatic, neighbours, atoms };

class SiteKernel {
public:
    static constexpr int kLanes = 4;

    SiteKernel(const Basis& basis, const double* theta);

    // Forward and adjoint passes for atoms first … first+count−1 (count ≤ kLanes); V receives their site
    // energies (eV). Follow with select() for each atom before pair_gradients() or add_vjp().
    // `adjoints` false skips the reverse pass (for callers that need only the moments: basis_jacobian()).
    void forward_batch(const Structure& s, int first, int count, double* V, bool adjoints = true);
    // Makes atom i, lane `lane` of the last batch, the current atom.
    void select(const Structure& s, int i, int lane);
    // g_ij = dV_i/dr_ij for each neighbour of the current atom; 3 values per neighbour, eV/Å.
    void pair_gradients(double* g);
    // Adds Σ_lanes d/dθ [ e·V_i + Σ_j W_ij · g_ij ] to grad (length n_params) for the atoms of the last batch
    // (forward_batch() or load_batch()); W[lane] has 3 values per neighbour of that atom. This is the per-site
    // vector–Jacobian product of MTP_SPEC §7.
    void vjp_batch(int count, double e, const double* const* W, double* grad);
    // Both derivatives of Φ = Σ_j W_ij · g_ij for the atoms of the last batch, with one tangent pass: adds
    // dΦ/dθ to grad (as vjp_batch() with e = 0) and writes H[lane] = dΦ/dr_ij = Σ_k ∂²V_i/∂r_ij∂r_ik W_ik,
    // 3 values per neighbour (eV/Å² times the units of W): the site energy's Hessian in the neighbour vectors
    // applied to W, exact (the radial basis' second derivative included). grad may be null.
    void second_order_batch(int count, const double* const* W, double* grad, double* const* H);

    // A batch resumed without its forward pass: neighbour tables rebuilt, moments and adjoints as save() wrote
    // them (2 × moments_count values per atom, from `state`).
    void load_batch(const Structure& s, int first, int count, const double* state);
    void save(double* moments, double* adjoints) const;

    // ∂B_α/∂r_ij of every basis function α (the moment basis.mapping[α]) of the current atom for its active
    // neighbours a0 … a0+w−1: row α of the returned table (jacobian_row() values) holds the x, y and z blocks of
    // jacobian_stride() = w values, neighbour a0 + a at position a of each block. Forward mode: the basic moments'
    // tangents, then the chain rule through the basis functions' sparse derivatives by the basic moments
    // (basis_chain(), once per batch, from the moments of forward_batch()). Valid until the next call.
    const double* basis_jacobian(int a0, int w);
    // As basis_jacobian(), for all active neighbours at once, along 3K + kStrains collective directions instead
    // of their 3w displacements: the displacement of each of K atoms, atom column c moving the active neighbours
    // members[c·images] … members[c·images + images − 1] (its images, padded with n_active(), no neighbour; images
    // of the central atom move with it and are in no column), then the symmetric strains r_ij ↦ ε r_ij with ε = e_x e_x, e_y e_y, e_z e_z, sym(e_y e_z),
    // sym(e_x e_z), sym(e_x e_y). Row k holds the x, y and z blocks of K values (jacobian_stride() = K), then the
    // kStrains values. In small periodic cells a neighbourhood holds several images of one atom, and 3K + 6 < 3w.
    const double* basis_jacobian_atoms(const int* members, int images, int K);
    static constexpr int kStrains = 6;
    int jacobian_stride() const { return jac_stride_; }
    int jacobian_row() const { return jac_row_; }
    // Neighbours of the current atom inside the basis' cutoff, as indices into its neighbour list.
    int n_active() const { return slots_[lane_].n_act; }
    const std::vector<int>& active_neighbors() const { return slots_[lane_].active; }
    // Neighbours per basis_jacobian() call that keep its tables within about 1 MiB (the L2 cache).
    int jacobian_tile() const;
    const std::vector<double>& moments() const { return m_; }

    int n_neighbors() const { return slots_[lane_].n_nb; }
    // Neighbours of atom i of s inside the basis' cutoff.
    int count_active(const Structure& s, int i) const;
    // Sizes the neighbour tables for atoms with up to n_active neighbours inside the cutoff at once, so that they
    // are not regrown (and every kernel of a parallel evaluation lays them out alike).
    void reserve(int n_active) { ensure_stride(n_active); }
    int n_params() const { return basis_.n_params(); }
    const Basis& basis() const { return basis_; }
    int moments_count() const { return static_cast<int>(m_.size()); }

private:
    // What a lane holds: which atom its neighbour tables belong to, and its compacted neighbour list.
    struct Slot {
        const Structure* structure = nullptr;
        int atom = -1, type = 0, n_nb = 0, n_act = 0;
        std::vector<int> active, nb_type;
    };
    typedef double Lanes __attribute__((vector_size(kLanes * sizeof(double))));

    // Row r of a per-neighbour table, in the current lane's block.
    double* row(std::vector<double>& table, int r) {
        return table.data() + lane_ * (table.size() / kLanes) + static_cast<std::size_t>(r) * stride_;
    }
    const double* row(const std::vector<double>& table, int r) const {
        return table.data() + lane_ * (table.size() / kLanes) + static_cast<std::size_t>(r) * stride_;
    }
    void ensure_stride(int n_active);
    void prepare_batch(const Structure& s, int first, int count);
    void basic_moments(int lane);
    void monomial_row(int d, double* M) const;
    void monomial_gradient_rows(int d, double* gx, double* gy, double* gz) const;
    // g = Σ_k alpha_k ∂m_k/∂r_ij for the current atom's neighbours (alpha over all moments), 3 per neighbour
    void moment_gradients(const double* alpha, double* g);
    // ṁ_k along W into batch_tan_ (and the per-monomial rows t1_, t2_), through the products
    void tangents_batch(int count, const double* const* W);
    // batch_tan_adj_ = d(e·V + Σ adj·ṁ)/dm: the adjoint of the moments in e·V + Φ
    void tangent_adjoints(double e);
    // the θ-derivative of e·V + Φ once tangents_batch() and tangent_adjoints(e) ran
    void theta_gradient_batch(int count, double e, double* grad);
    // rows of the basic moments in table (row stride per): ∂m_k/∂r_ij for the active neighbours a0 … a0+w−1,
    // the x, y and z blocks `block` ≥ w apart (zero-padded)
    void basic_tangents(int a0, int w, int block, double* table, int per);
    // chain_ = ∂m_x/∂m_b for every moment x and the basic moments b it depends on (Basis::chain_basic), at the
    // moments of every lane of the batch
    void basis_chain();
    // the basis functions' rows of jac_ (row stride per) from the basic moments' rows of basic_jac_
    void basis_rows(int per);
    // basis_rows() for columns q0 … q0 + 8·NC − 1
    template <int NC>
    void basis_rows_block(int per, int q0);
    // f''_μ of the current atom's neighbours into ddf_
    void radial_second_derivatives();

    const Basis& basis_;
    const double* theta_;
    int K_, R_, D_;
    // distinct monomials of the basis; the basic moments using monomial d are
    // group_moment_[group_begin_[d] .. group_begin_[d+1]) with radial functions group_mu_[…]
    std::vector<std::array<int, 3>> monomials_;
    std::vector<int> degree_;
    std::vector<int> group_begin_, group_moment_, group_mu_;

    Slot slots_[kLanes];
    std::size_t lane_ = 0;
    int stride_ = 0;
    std::vector<double> r_, inv_r_, ux_, uy_, uz_, powers_, Q_, dQ_, f_, df_, ddQ_, ddf_, t1_, t2_, P_, Dmu_, acc_;
    void geometry(const Structure& s, int i);

    std::vector<Lanes> batch_m_, batch_adj_, batch_tan_, batch_tan_adj_;  // [moment] of kLanes values
    std::vector<double> m_, adj_;  // the current atom
    std::vector<double> lane_tan_adj_;  // one lane's tangent adjoints (second_order_batch)
    std::vector<double> jac_;        // basis_jacobian(): [basis function][component][neighbour], rows of jac_row_
    std::vector<double> basic_jac_;  // the same for the basic moments
    std::vector<double> basic_tan_;  // basis_jacobian_atoms(): the basic moments' neighbour rows
    std::vector<Lanes> chain_;       // basis_chain(), [derivative][lane]
    bool chain_current_ = false;     // chain_ is the current batch's
    int jac_stride_ = 0, jac_row_ = 0;
    std::vector<char> run_assigns_;  // per run of the basis: its target's chain_ list is set, not added to
};

// Site energies (N), forces (N×3, eV/Å) and PlusStress (3×3 row-major, eV) of one configuration. With `state`,
// every atom's moments and adjoints are kept there (N × 2 × moments_count) for a following structure_vjp().
// `kernel` is reusable across configurations (one per thread) at a fixed θ.
void evaluate_structure(SiteKernel& kernel, const Structure& s, double* site_energies, double* forces,
                        double* plus_stress, std::vector<double>* state = nullptr);

// evaluate_structure() on n_threads OpenMP threads (≥ 1), with per-atom virials. Each thread evaluates whole
// batches of atoms with its own kernel and writes every pair gradient g_ij = dV_i/dr_ij to its slot; each atom then
// gathers its force F_i = Σ_j g_ij − Σ_k g_ki in pair order (outgoing pairs, then incoming ones in pair order), so
// the results are identical bit for bit for any thread count and schedule. atom_virials (N × 3 × 3 row-major, eV,
// may be null) gets W_i = −½ Σ_j g_ij ⊗ r_ij − ½ Σ_k g_ki ⊗ r_ki: each pair's term −g ⊗ r split half to each of its
// two atoms, as LAMMPS tallies pair virials (ev_tally_xyz) and ASE's Lennard-Jones calculator its per-atom stresses;
// plus_stress is Σ_i W_i in atom order, the PlusStress of evaluate_structure(). Uses s.incoming when
// s.index_incoming() built it, else builds a private copy per call. Neighbours beyond the basis' cutoff (a list
// built with a Verlet skin) contribute nothing.
void evaluate_structure_parallel(const Basis& basis, const double* theta, const Structure& s,
                                 double* site_energies, double* forces, double* plus_stress, double* atom_virials,
                                 int n_threads);

// Adds to grad the vector–Jacobian product  e·dE/dθ + Σ_i φ_i·dF_i/dθ + Σ_ab σ_ab dS_ab/dθ.
// phi (N×3) and sigma (3×3) may be null (zero cotangent). `state` from evaluate_structure() at the same θ
// spares recomputing the moments.
void structure_vjp(SiteKernel& kernel, const Structure& s, double e, const double* phi, const double* sigma,
                   double* grad, const std::vector<double>* state = nullptr);

// For a cotangent a (N×3) on the forces: adds a·dF/dθ to grad_theta (n_params, may be null) and writes
// a·dF/dX to grad_x (N×3, eV/Å² times the units of a), X the atomic positions at fixed cell. dF/dX = −∇²E is
// symmetric, so grad_x is also the force Jacobian applied to a: the exact Hessian–vector product of the energy.
void structure_force_vjp(SiteKernel& kernel, const Structure& s, const double* a, double* grad_theta,
                         double* grad_x);

// Rows of the Jacobian of (E, F (atom-major, 3N), PlusStress (9)) with respect to θ: row t of J (n_params values
// each, added to) is d(output rows[t])/dθ, output 0 the energy, 1 + 3i + a the force F_ia, 1 + 3N + 3a + b the
// PlusStress S_ab. Equals structure_vjp() with unit cotangents, but each batch of atoms is loaded once for all
// rows. `state` from evaluate_structure() at the same θ.
void structure_jacobian(SiteKernel& kernel, const Structure& s, const std::vector<int>& rows, double* J,
                        const std::vector<double>& state);

}  // namespace mtpfit
