// The weighted linear least-squares system of the species and moment coefficients at fixed radial coefficients
// (MTP_SPEC §5: energies, forces and PlusStress are linear in them), accumulated as the R factor of its √w-scaled
// design matrix without ever storing that matrix.
#pragma once

#include <Eigen/Dense>

#include "site_kernel.hpp"
#include "structure.hpp"

namespace mtpfit {

// The R factor of a growing set of rows: rows are stacked under the current R and the stack is reduced by a
// Householder QR whenever the buffer is full (sequential TSQR; Demmel, Grigori, Hoemmen & Langou, SIAM J. Sci.
// Comput. 34, A206 (2012)). Memory (n + buffer) × n whatever the number of rows. Householder QR is column-wise
// backward stable, so badly scaled columns keep their relative accuracy: RᵀR = AᵀA and R has A's singular values.
class RFactor {
public:
    RFactor(int n_cols, int buffer_rows);
    // Appends the row scale · (x[0], x[stride], …, x[(n − 1)·stride]).
    void add_row(const double* x, std::ptrdiff_t stride, double scale);
    // Appends the rows of an R factor (n × n); into a factor with no rows yet, it is taken as it is.
    void add(const Eigen::MatrixXd& R);
    // Back to no rows.
    void reset();
    // The current R (n × n, upper triangular).
    const Eigen::MatrixXd& R();
    int cols() const { return n_; }

private:
    void reduce();
    int n_, cursor_;
    bool empty_ = true;
    Eigen::MatrixXd stack_;  // rows [0, n): R; rows [n, cursor_): rows added since the last reduction
    Eigen::MatrixXd R_;
};

// The linear design of configuration s at the kernel's radial coefficients, written to D (row-major, 10 + 3N rows
// of ld ≥ S + M values; the first S + M of each are written): row 0 the energy, rows 1 + 3i + a the force F_ia,
// rows 1 + 3N + 3a + b the PlusStress S_ab; column t < S the number of atoms of species t (the derivative by
// ξ_t), column S + α the derivative by the moment coefficient c_α. Per atom one forward pass, and forward mode
// along its tangent directions: the basic moments' tangents, then ∂B_α = Σ_b (∂B_α/∂m_b) ∂m_b with the basis
// functions' sparse derivatives by the basic moments (SiteKernel::basis_jacobian()).
// `directions` chooses, per atom, the tangent directions of the forward-mode pass: the 3n displacements of its
// neighbours, or the 3K displacements of the K distinct atoms among them and 6 strains (fewer in small periodic
// cells, where a neighbourhood holds several images of one atom); `automatic` takes the cheaper by a cost model.
// The design is the same either way (to round-off).
void structure_linear_design(SiteKernel& kernel, const Structure& s, double* D, int ld,
                             TangentDirections directions = TangentDirections::automatic);

// Each atom's site energy's derivative by the linear coefficients: row i of R (row-major, N × (S + M)) is the
// one-hot of its species, then its basis functions B_α(i) (∂V_i/∂c_α). The rows of the extrapolation grade's
// neighbourhood mode; OpenMP over atoms, each row computed by one thread: the same for any thread count.
void site_linear_rows(const Basis& basis, const double* theta, const Structure& s, double* R, int n_threads);

}  // namespace mtpfit
