"""Floating-point work per atom of the kernels, from the operation counts of cpp/site_kernel.cpp.

A model, not a measurement (this machine has no hardware counters): each multiply and each add counts as one
flop, per neighbour and per atom, for the level's basis sizes. Together with the timings of mtp_bench it gives
the fraction of the core's peak (Zen 3: 2 FMA pipes × 4 doubles × 2 flops = 16 flops per cycle).

    python benchmarks/flop_estimate.py --neighbours 43.1 --ghz 2.6 benchmarks/results/mtp_bench_level*.json
"""
import argparse
import json

from mtpfit import MTP


def flops(level: int, neighbours: float, species: int = 3) -> dict:
    b = MTP.from_level(level, species=list(range(species))).basis
    K, R = b.radial_funcs_count, b.radial_basis_size
    nb = len(b.alpha_index_basic)
    dm = len({tuple(x) for x in b.alpha_index_basic[:, 1:]})
    D = int(b.alpha_index_basic[:, 1:].sum(axis=1).max()) + 1
    P = len(b.alpha_index_times)
    M = len(b.alpha_moment_mapping)
    geometry = 12 + 10 * R + 4 * K * R + 3 * D          # r, u, Chebyshev recurrence, f and f', powers
    moments = 2 * dm + 2 * nb                           # monomial rows, basic-moment dot products
    pair = 4 * nb + 20 * dm + 12                        # gathered adjoints, A, C, G, g_ij
    forces = 24                                         # F_i, F_j and the virial
    graph = 3 * P + 2 * M + 6 * P                       # products forward, energy, reverse (2 uses per product)
    efs = neighbours * (geometry + moments + pair + forces) + graph
    tangents = 29 + 19 * dm + 4 * nb                    # W, t1/t2 rows, tangent dot products
    radial = 2 * dm + 5 * nb + 4 * K * R                # P, D rows and the scatter into ∂L/∂c
    vjp_graph = 5 * P + 2 * M + 10 * P                  # tangent products, coefficients, reverse of both
    loss_grad = efs + neighbours * (tangents + radial) + vjp_graph
    return {"level": level, "efs_flops_per_atom": efs, "loss_gradient_flops_per_atom": loss_grad}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="mtp_bench JSON files (the level is read from the name)")
    parser.add_argument("--neighbours", type=float, default=43.1)
    parser.add_argument("--ghz", type=float, default=2.6)
    parser.add_argument("--flops-per-cycle", type=float, default=16.0)
    args = parser.parse_args()
    peak = args.ghz * 1e9 * args.flops_per_cycle
    print(f"peak {peak / 1e9:.1f} GFlop/s per core")
    for path in args.results:
        run = json.load(open(path))
        level = int(path.rsplit("level", 1)[1][:2])
        model = flops(level, run["neighbours_per_atom"])
        serial = next(r for r in run["rows"] if r["threads"] == 1)
        for kind, key in (("energy+forces", "energy_forces_us_per_atom"), ("loss+gradient", "loss_gradient_us_per_atom")):
            work = model["efs_flops_per_atom" if kind == "energy+forces" else "loss_gradient_flops_per_atom"]
            rate = work / (serial[key] * 1e-6)
            print(f"level {level:02d} {kind:14s} {work / 1e3:8.1f} kflop/atom  {rate / 1e9:6.2f} GFlop/s  "
                  f"{100 * rate / peak:5.1f} % of peak")


if __name__ == "__main__":
    main()
