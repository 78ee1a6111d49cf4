"""Command line: ``mtpfit train``, ``tune``, ``evaluate``, ``grade``, ``select``, ``learn``, ``bench``, ``report``,
``analyse``, ``finetune-relax`` and ``lammps`` (also ``python -m mtpfit``)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .datasets import BUNDLED
from .io import FormatError, read_files
from .io.json_formats import STRESS_UNITS
from .metrics import error_metrics, format_errors
from .objective import Loss, Objective
from .optim import OPTIMIZERS
from .potential.mtp import LEVELS, MTP, species_labels
from .potential.reader import read_potential
from .train import STARTS, SCIPY_METHODS
from .train.config import TrainingConfig, canonical_optimizer
from .train.tune import METRICS
from .train.fit import fit, load_training_data

__all__ = ["main"]

#: The native BFGS's pre-training iterations when --pretrain-iter is not given (MLIP-2's 75).
NATIVE_PRETRAIN_ITER = TrainingConfig().pretrain


def _species_arg(values: list | None) -> list | None:
    """--species (strings) or a config's ``species`` (strings or integers) as species labels."""
    return None if values is None else species_labels(values)


def _add_stress_options(parser) -> None:
    """--stress-order and --stress-units: how JSON files store stresses (default: each format's convention)."""
    parser.add_argument("--stress-order", help="Voigt order of JSON stresses (default: VASP's xx yy zz xy yz xz for "
                                               "mlearn/maml, MLIP's xx yy zz yz xz xy for the study's JSON; mlearn "
                                               "Cu/Mo/Ni files: 'xx yy zz xy xz yz')")
    parser.add_argument("--stress-units", choices=STRESS_UNITS,
                        help="units of JSON stresses: kBar (VASP's stress; the default for mlearn/maml) or eV (the "
                             "PlusStress; the default for the study's JSON, whose MoNbTaW seed_validation.json needs "
                             "kBar and VASP's order)")


def _data_arguments(parser: argparse.ArgumentParser):
    """The data options and the species and cutoffs of the model; returns the model group."""
    data = parser.add_argument_group("data")
    data.add_argument("--train", nargs="+", metavar="FILE", help=".cfg, mlearn/study JSON, extxyz, a DeePMD-kit folder or any ASE file")
    data.add_argument("--validation", nargs="+", metavar="FILE", help="validation files (else a random split)")
    data.add_argument("--validation-fraction", type=float, default=0.1,
                      help="fraction held out when no --validation is given (default 0.1)")
    data.add_argument("--format", help="force a reader: cfg, mlearn-json, study-json, deepmd (a DeePMD-kit folder) or an "
                                          "ASE format")
    _add_stress_options(data)
    data.add_argument("--dataset", choices=sorted(BUNDLED), default="mlearn-Mo",
                      help="bundled dataset used when --train is absent (default mlearn-Mo)")
    model = parser.add_argument_group("model")
    model.add_argument("--species", nargs="+", help="species of types 0..S-1 (symbols or indices; default: "
                                                    "those in the data, sorted)")
    model.add_argument("--min-dist", type=float, help="R_min of the radial basis, Å (default 2.0)")
    model.add_argument("--max-dist", type=float, help="cutoff, Å (default 5.0; 5.2 for the bundled Mo set)")
    return model


def _load_data(args):
    """Training and validation sets, species and cutoffs from the data options (as :func:`mtpfit.fit` reads them)."""
    keys = ("train", "validation", "validation_fraction", "format", "stress_order", "stress_units", "dataset",
            "species", "min_dist", "max_dist", "seed")
    data = load_training_data(TrainingConfig(**{k: getattr(args, k) for k in keys}, output=None))
    return data.train, data.validation, data.species, data.min_dist, data.max_dist


def _training_arguments(parser: argparse.ArgumentParser, model, tune: bool = False) -> None:
    """Every option of ``mtpfit train`` after the data ones (``model``: the group of :func:`_data_arguments`). For
    ``tune`` (:func:`mtpfit.train.tune.tune`) without those the tuning sets itself (--optimizer, --lr,
    --max-seconds, --resume, --overwrite, --output, --quiet), and with --max-iter and --epochs so high that the
    budget alone stops each run."""
    model.add_argument("--level", type=int, default=16, choices=LEVELS, help="MTP level (default 16)")
    model.add_argument("--radial-basis-size", type=int, default=8)
    model.add_argument("--model", choices=("mtp", "etn"), default="mtp",
                       help="mtp (default: a Moment Tensor Potential of --level) or etn (an equivariant tensor "
                            "network, shaped by the --etn-* options; trainers: als, LM, GN, scipy's, the mini-batch "
                            "zoo; writes trained.etn.json)")
    model.add_argument("--etn-max-l", type=int, default=2, metavar="L", help="ETN: largest angular order (default 2)")
    model.add_argument("--etn-channels", type=int, default=4, help="ETN: radial channels per order (default 4)")
    model.add_argument("--etn-copies", type=int, default=3, metavar="D",
                       help="ETN: feature copies in the tensor train, body order D + 1 (default 3)")
    model.add_argument("--etn-ranks", type=int, nargs="+", default=4, metavar="R",
                       help="ETN: bond ranks, one for every bond or D - 1 of them (default 4)")
    model.add_argument("--init-potential", metavar="FILE",
                       help="start from this .mtp file (e.g. a checkpoint; with --model etn an .etn.json)")
    model.add_argument("--init-interval", type=float, metavar="A",
                       help="start from θ uniform in [-A, A] (default: the MLIP load defaults)")
    model.add_argument("--start", choices=STARTS,
                       help="starting point: resolve = radial functions scaled to unit norm, then the exact "
                            "least-squares species and moment coefficients; species = only the species energies "
                            "fitted; none = θ as initialised (default: resolve for full-batch trainers, species for "
                            "mini-batch ones, none with --init-potential). The native BFGS re-solves by itself")
    model.add_argument("--no-species-fit", action="store_true", help="the same as --start none (older name)")
    training = parser.add_argument_group("loss and optimizer")
    training.add_argument("--loss", choices=("mlip", "plain", "file"), default="mlip",
                     help="mlip: MLIP-2 weighting; plain: the study's plain sums; file: weights in the data")
    training.add_argument("--energy-weight", type=float, help="multiplier of the energy terms (default 1)")
    training.add_argument("--force-weight", type=float,
                     help="multiplier of the force terms (default 0.01; 1 with --loss file: the stored weights)")
    training.add_argument("--stress-weight", type=float,
                     help="multiplier of the stress terms (default 0.001; 1 with --loss file)")
    training.add_argument("--no-penalty", action="store_true", help="drop the radial orthonormality penalty")
    training.add_argument("--no-average", action="store_true",
                     help="sum the loss over configurations instead of averaging (the study's loss)")
    training.add_argument("--force-fraction", type=float, default=1.0,
                     help="partial force supervision: fraction of configurations keeping force labels")
    training.add_argument("--force-seed", type=int, help="seed of the --force-fraction choice (default: --seed)")
    if not tune:   # the candidates of a tuning name their optimizers and learning rates
        training.add_argument(
            "--optimizer", metavar="NAME",
            help=f"full batch: varpro (the MTP's default: variable projection, BFGS on the radial coefficients with "
                 f"the linear ones solved exactly at every step), native-bfgs (the reference trainer's BFGS: varpro "
                 f"pre-training, then BFGS on all of θ), varpro-LM (variable projection with Levenberg-Marquardt "
                 f"steps on the radial coefficients), scipy's {', '.join(SCIPY_METHODS)}, LM (Levenberg-Marquardt), GN "
                 f"(Gauss-Newton) or als (--model etn: exact least-squares sweeps over the ETN's cores); mini-batch "
                 f"(adam: the ETN's default): {', '.join(sorted(OPTIMIZERS))}; or a hybrid FIRST+FULLBATCH such as "
                 "adam+L-BFGS-B (--epochs, then --max-iter) or BFGS+LM (--max-iter, then --refine-iter)")
    training.add_argument("--max-iter", type=int, default=10 ** 6 if tune else 1000,
                     help="iterations of a full-batch optimizer (native-bfgs: after its pre-training; default "
                          "%(default)s)")
    training.add_argument("--pretrain-iter", type=int, metavar="N",
                     help=f"native-bfgs: BFGS iterations of the pre-training on the radial coefficients, before "
                          f"--max-iter (default {NATIVE_PRETRAIN_ITER}, as MLIP-2)")
    training.add_argument("--skip-pretrain", action="store_true",
                     help="native-bfgs: no pre-training (--pretrain-iter 0; MLIP-2's --skip-preinit)")
    if not tune:
        training.add_argument("--max-seconds", type=float, metavar="S",
                              help="wall-time budget of the training (both stages of a hybrid): it stops after the "
                                   "first iteration or step that ends past S seconds")
    training.add_argument("--refine-iter", type=int,
                     help="iterations of a hybrid's second stage (default: --max-iter)")
    training.add_argument("--refine-seconds", type=float, metavar="S",
                     help="with --max-seconds: the part of the budget kept for a hybrid's second stage")
    training.add_argument("--geodesic", action="store_true", help="LM: geodesic acceleration (Transtrum & Sethna 2012)")
    training.add_argument("--lm-tau", type=float, default=None,
                     help="LM and varpro-LM: initial damping λ₀, relative to each diagonal entry of JᵀWJ (default 1e-3)")
    training.add_argument("--sketch", type=int, default=None,
                     help="LM and varpro-LM: random sketch of JᵀWJ with this many rows per configuration (0: exact; "
                          "default 0 for LM, 8 for varpro-LM)")
    training.add_argument("--gtol", type=float, default=1e-8)
    if not tune:
        training.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    training.add_argument("--clip", type=float, help="gradient clipping by global norm (default: the optimizer's)")
    training.add_argument("--schedule", help="learning-rate schedule: constant, step, exponential, cosine, warmup, "
                                        "warmup_cosine (options via the config file's schedule_options)")
    training.add_argument("--batch-size", type=int, default=32, help="configurations per mini-batch (default 32)")
    training.add_argument("--epochs", type=int, default=10 ** 6 if tune else 100,
                          help="epochs of a mini-batch optimizer (default %(default)s)")
    training.add_argument("--validate-every", type=int, help="validate every N steps (default: every epoch)")
    training.add_argument("--validate-seconds", type=float, metavar="S",
                          help="with any trainer, also validate every S seconds of training and record the errors "
                               "in history.csv (a time-to-accuracy curve)")
    training.add_argument("--patience", type=int, help="early stopping after N validations without improvement")
    if not tune:
        training.add_argument("--resume", action="store_true",
                              help="continue the run checkpointed in --output on the same trajectory (every trainer; "
                                   "only budgets, reporting and --threads may change)")
        training.add_argument("--overwrite", action="store_true",
                              help="replace an earlier run in --output (without it, or --resume, an earlier run is "
                                   "refused)")
    training.add_argument("--seed", type=int, default=0, help="seeds the validation split and --init-interval")
    run = parser.add_argument_group("run")
    run.add_argument("--threads", type=int, default=0, help="OpenMP threads (default: all cores)")
    run.add_argument("--log-every", type=int, default=10, help="print train errors every N iterations")
    run.add_argument("--checkpoint-every", type=int, metavar="N",
                     help="checkpoint every N iterations (default 10) or mini-batch steps (default 100), and at "
                          "the end or a stop")
    if not tune:
        run.add_argument("--output", default="mtpfit-run", help="output folder (default ./mtpfit-run)")
        run.add_argument("--quiet", action="store_true", help="no per-iteration lines")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtpfit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mtpfit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an MTP and report validation errors",
                       description="Train an MTP. Without --train, trains on the bundled mlearn Mo set "
                                   "(published train/test split). Every option can also be set in "
                                   "a TOML file (--config) under its long name with '_' for '-'; the command "
                                   "line wins.")
    t.add_argument("--config", metavar="TOML", help="read options from this TOML file")
    _training_arguments(t, _data_arguments(t))

    u = sub.add_parser("tune", help="choose the trainer and learning rate by successive halving under a wall-time "
                                    "budget, and write its configuration for mtpfit train --config",
                       description="Train candidate trainers (and learning rates) on the data and keep the best "
                                   "1/ETA of them by the validation errors, round after round, each survivor "
                                   "continuing its run with ETA times the time, until one is left (successive "
                                   "halving: Jamieson & Talwalkar 2016; Li et al. 2018). --budget bounds the "
                                   "training seconds of all runs together. Prints the ranking of every round and "
                                   "writes OUTPUT/tune.json, OUTPUT/best.toml (the winner for mtpfit train "
                                   "--config) and a run folder per candidate under OUTPUT/runs. Takes every option of "
                                   "mtpfit train but those of the optimizer's choice and budget; --config reads a "
                                   "TOML file of train's options (its optimizer, lr and max_seconds are the "
                                   "candidates').")
    u.add_argument("--config", metavar="TOML", help="read options from this TOML file")
    u.add_argument("--budget", type=float, required=True, metavar="SECONDS",
                   help="training seconds of the whole tuning (every run of every round)")
    u.add_argument("--eta", type=int, default=3, help="each round keeps 1/ETA of the candidates and gives them ETA "
                                                      "times the time (default 3)")
    u.add_argument("--metric", choices=tuple(METRICS), default="both",
                   help="validation errors that rank: epa (EPA RMSE), force (force RMSE) or both (default: the sum of "
                        "each error over the round's best)")
    u.add_argument("--candidates", nargs="+", metavar="NAME[:LR]",
                   help="the candidates, e.g. adam:3e-3 varpro-LM (default: varpro-LM, varpro, LM, native-bfgs, BFGS "
                        "and adam, adamw, radam, ranger, schedule_free_adamw, muon, soap, momentum at learning rates "
                        "1e-3, 3e-3, 1e-2)")
    u.add_argument("--output", default="tune", help="folder of tune.json, best.toml and runs/ (default ./tune)")
    u.add_argument("--overwrite", action="store_true", help="replace an earlier tuning in --output")
    u.add_argument("--resume", action="store_true",
                   help="continue the interrupted tuning in --output (same candidates, budget, eta and metric): its "
                        "finished rounds are kept and the round it was in continues from the runs' checkpoints")
    _training_arguments(u, _data_arguments(u), tune=True)

    b = sub.add_parser("bench", help="run optimizer-study campaigns (resumable)",
                       description="Run every unfinished run of the campaigns: grids of datasets x models x "
                                   "optimizers x seeds, one result file per run named by its hash, with a "
                                   "checksum. A damaged result file (truncated by a kill, edited) is named and "
                                   "run again. Workers end with this process, even when it is killed.")
    b.add_argument("campaigns", nargs="+", metavar="CAMPAIGN.toml")
    b.add_argument("--workers", type=int, help="parallel runs (default: cores / threads_per_run)")
    b.add_argument("--dask", metavar="ADDRESS", nargs="?", const="local",
                   help="run on Dask: a scheduler address, or nothing (or 'local') for a local cluster")
    b.add_argument("--results", help="results folder (default: the campaign file's `results`)")
    b.add_argument("--list", action="store_true",
                   help="only list the runs: done, todo, or damaged (named by a warning; bench runs it again)")
    b.add_argument("--prune", action="store_true",
                   help="delete result files that belong to no run of the campaign as it now reads, then run")

    r = sub.add_parser("report", help="REPORT.md with tables and plots from campaign results")
    r.add_argument("results", nargs="?", default="benchmarks/results", help="results folder")
    r.add_argument("--campaigns", default="benchmarks/campaigns", help="campaign files (descriptions, study)")
    r.add_argument("--out", help="report file (default RESULTS/REPORT.md)")

    a = sub.add_parser("analyse", help="loss landscape: Fisher information across levels, or Hessian spectra "
                                       "through the optimizers' preconditioners",
                       description="fim: train one MTP per --levels with --optimizer, then tabulate and plot the "
                                   "Fisher information 2JᵀWJ (spectrum, decades, effective parameters, block and "
                                   "basis-function sensitivities). hessian: train --level with each of "
                                   "--optimizers from the same start, then the spectra of H and of P^½HP^½ for "
                                   "each optimizer's preconditioner P. design: grow the level over --levels and "
                                   "prune the basis functions of least Fisher sensitivity, retraining, for the "
                                   "front of validation error against parameter count (Wang, Transtrum et al. "
                                   "2025). Tables (CSV, Markdown) and PNG plots go to --output.")
    a.add_argument("what", choices=("fim", "hessian", "design"))
    model = _data_arguments(a)
    model.add_argument("--level", type=int, default=8, choices=LEVELS, help="hessian: the MTP level (default 8)")
    model.add_argument("--levels", type=int, nargs="+", choices=LEVELS,
                       help="MTP levels (fim, design: default 6 8 10 12 14 16; hessian: instead of --level)")
    a.add_argument("--loss", choices=("mlip", "plain", "file"), default="mlip")
    a.add_argument("--optimizer", default="LM", help="fim, design: full-batch trainer (default LM)")
    a.add_argument("--sketch", type=int, default=0, help="fim with LM: sketched JᵀWJ rows per configuration")
    a.add_argument("--refit-iter", type=int, default=100, help="design: iterations after each pruning")
    a.add_argument("--prune-fraction", type=float, default=0.25,
                   help="design: share of basis functions dropped per pruning step")
    a.add_argument("--max-prunes", type=int, default=3, help="design: pruning steps per level")
    a.add_argument("--optimizers", nargs="+", default=["adam", "radam", "soap", "BFGS"],
                   help="hessian: optimizers whose end points and preconditioners are analysed")
    a.add_argument("--max-iter", type=int, default=50, help="iterations of full-batch training (default 50)")
    a.add_argument("--epochs", type=int, default=20, help="epochs of mini-batch training (default 20)")
    a.add_argument("--batch-size", type=int, default=32)
    a.add_argument("--init-interval", type=float, default=0.1, help="θ₀ uniform in ±A, seeded (default 0.1)")
    a.add_argument("--probes", type=int, default=4, help="hessian: Rademacher probes of the spectral density")
    a.add_argument("--steps", type=int, default=40, help="hessian: Lanczos steps per probe")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--threads", type=int, default=0)
    a.add_argument("--output", default="mtpfit-analysis", help="output folder (default ./mtpfit-analysis)")

    f = sub.add_parser("finetune-relax", help="fine-tune a potential through unrolled relaxations (BPTT)",
                       description="Fine-tune a trained MTP on the error of its own relaxations (Dramko et al. "
                                   "2025): the DFT minima of --train and --test (largest force component below "
                                   "--fmax-minimum) are displaced at random (--amplitude Å per coordinate); for "
                                   "each --k and --eta the potential is fine-tuned through k unrolled steps of "
                                   "--rule with backpropagation through time, the usual energy/force loss of "
                                   "--train mixed in with weight --mix; then the test starts are relaxed to "
                                   "convergence with FIRE. Tables, plots and the fine-tuned potentials go to "
                                   "--output; a rerun resumes.")
    f.add_argument("--potential", required=True, help="the trained .mtp file")
    f.add_argument("--train", nargs="+", required=True, metavar="FILE",
                   help="labelled data: its DFT minima are fine-tuned on; its energies and forces form the mixed-in "
                        "loss")
    f.add_argument("--test", nargs="+", required=True, metavar="FILE", help="labelled data whose minima test")
    f.add_argument("--format")
    _add_stress_options(f)
    f.add_argument("--species", nargs="+", help="species of types 0..S-1 (default: those in --train, sorted)")
    f.add_argument("--k", type=int, nargs="+", default=[10, 20, 50], help="unrolled steps (default 10 20 50)")
    f.add_argument("--eta", type=float, nargs="+", default=[0.02, 0.05],
                   help="gradient-descent step η, Å²/eV (FIRE: its initial Δt) (default 0.02 0.05)")
    f.add_argument("--rule", choices=("gd", "fire"), default="gd", help="unrolled relaxation (default gd)")
    f.add_argument("--max-step", type=float, default=0.2, help="largest displacement of an atom per step, Å")
    f.add_argument("--optimizer", default="adam", help="BFGS, L-BFGS-B, CG or a zoo name (default adam)")
    f.add_argument("--lr", type=float, default=1e-4, help="learning rate of a zoo optimizer (default 1e-4)")
    f.add_argument("--max-iter", type=int, default=40, help="fine-tuning steps (default 40)")
    f.add_argument("--batch-size", type=int, help="starts per step of a zoo optimizer (default: all)")
    f.add_argument("--mix", type=float, default=0.1,
                   help="weight of the energy/force loss, both terms 1 at the start (default 0.1)")
    f.add_argument("--amplitude", type=float, default=0.05, help="σ of the start displacements, Å (default 0.05)")
    f.add_argument("--starts", type=int, default=1, help="starts per fine-tuning minimum (default 1)")
    f.add_argument("--test-starts", type=int, default=4, help="starts per test minimum (default 4)")
    f.add_argument("--fmax-minimum", type=float, default=0.02, help="DFT minimum: largest |F_ia| below, eV/Å")
    f.add_argument("--fmax", type=float, default=1e-3, help="converged FIRE relaxations stop below, eV/Å")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--threads", type=int, default=0)
    f.add_argument("--output", default="mtpfit-finetune", help="output folder (default ./mtpfit-finetune)")

    m = sub.add_parser("lammps", help="build (once) the LAMMPS plugin with pair style mtp and print how to load it",
                       description="Build the LAMMPS plugin (pair style mtp on the C++ core) against the installed "
                                   "lammps package, cache it, and print the input line that loads it: "
                                   "'plugin load PATH'. Needs pip install \"mtpfit[lammps]\".")
    m.add_argument("--path", action="store_true", help="print only the plugin's path (for -var plugin $(…))")
    m.add_argument("--no-build", action="store_true", help="only look up an already built plugin")
    m.add_argument("--extrapolation", metavar="POT", help="also write POT.als.txt, the neighbourhood-mode active set "
                   "of POT (POT.als.npz, from mtpfit grade --mode neighbourhood) for 'pair_style mtp POT "
                   "extrapolation POT.als.txt', and print that line")

    for name, what in (("grade", "extrapolation grade γ of configurations against the training set's active set"),
                       ("select", "choose the candidates that most enlarge the active set (MaxVol select-add)")):
        g = sub.add_parser(name, help=what, description=what.capitalize() + " (configuration mode: rows ∂E/∂θ "
                           "of the species and moment coefficients per atom; neighbourhood mode: one row ∂V_i/∂θ per "
                           "atom; Podryabinkin & Shapeev 2017). The active set is built from TRAIN by MaxVol once and "
                           "kept next to the potential (POT.als.npz); it is rebuilt when the potential changed."
                           + (" select changes that file only with --update (the chosen configurations have no "
                              "labels yet): later grades and selections then count them as known, until the "
                              "retrained potential's set is built from the grown TRAIN." if name == "select"
                              else ""))
        g.add_argument("potential", help=".mtp file")
        g.add_argument("train", help="the potential's training set (any format the readers know)")
        g.add_argument("configurations", help="configurations to grade" if name == "grade" else "candidates")
        g.add_argument("--output", metavar="CFG", default=None if name == "grade" else "selected.cfg",
                       help="grade: the configurations with their γ: .cfg (Feature MV_grade, and with --mode "
                            "neighbourhood each atom's γ as the AtomData column nbh_grades, as MLIP writes it) or "
                            ".extxyz (info MV_grade, and per atom the array nbh_grades); select: the chosen "
                            "candidates (.cfg, default selected.cfg)")
        if name == "select":
            g.add_argument("--threshold", type=float, default=1.001,
                           help="add candidates whose γ exceeds this (default 1.001)")
            g.add_argument("--max", type=int, metavar="N", help="at most N candidate configurations (default: no "
                           "limit); in neighbourhood mode the atoms swapped in belong to at most N configurations")
            written = g.add_mutually_exclusive_group()
            written.add_argument("--update", action="store_true",
                                 help="write the active set with the chosen configurations swapped in to POT.als.npz "
                                      "(when anything was chosen), so that later grades count them as known")
            written.add_argument("--active-set-output", metavar="NPZ",
                                 help="write the updated active set to NPZ instead, leaving POT.als.npz as it is")
        g.add_argument("--mode", choices=("configuration", "neighbourhood"), default=None,
                       help="rows per configuration or per atom (a configuration's γ is then its atoms' largest); "
                            "default: the mode of POT.als.npz, configuration when there is none. "
                            + ("Another mode than the file's rebuilds it from TRAIN." if name == "grade" else
                               "Another mode than the file's is refused (the file may hold earlier selections): "
                               "mtpfit grade --mode M rebuilds it."))
        g.add_argument("--format")
        _add_stress_options(g)
        g.add_argument("--threads", type=int, default=0)

    w = sub.add_parser("learn", help="active learning: train, explore with MD, select by γ, label, retrain",
                       description="Run (or resume: the same CONFIG and folder) the active-learning loop "
                                   "(mtpfit.active.learn). CONFIG.toml holds LearningConfig's fields: seeds (files), "
                                   "labeller (\"emt\" or \"module:function\" returning an ASE calculator), level, "
                                   "temperatures (K), pressures (GPa: NPT explorations; absent: NVT), steps, "
                                   "mode (configuration or neighbourhood: grade and select by atoms), gamma_select, "
                                   "gamma_break, max_selected, max_cycles, output.")
    w.add_argument("learn_config", metavar="CONFIG.toml", help="TOML file of LearningConfig's fields")
    w.add_argument("--max-cycles", type=int, help="override max_cycles (a larger value continues a finished loop)")
    w.add_argument("--threads", type=int, help="override threads (0: all cores)")

    e = sub.add_parser("evaluate", help="errors of a potential on labelled data")
    e.add_argument("potential", help=".mtp file, or an ETN's .etn.json")
    e.add_argument("data", nargs="+", help="labelled files")
    e.add_argument("--format")
    _add_stress_options(e)
    e.add_argument("--species", nargs="+", help="species of types 0..S-1 (element symbols or indices)")
    e.add_argument("--threads", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print the errors as JSON")
    e.add_argument("--output", metavar="FILE",
                   help="write the predicted energies, forces and stresses: .extxyz (the DFT labels kept as dft_*) "
                        "or .cfg (as MLIP's calc-efs)")
    e.add_argument("--plot", metavar="PNG", help="write the parity plot (energy per atom, forces, stresses)")
    return parser


def _train(args) -> int:
    from .parallel import world
    from .train.checkpoint import set_file_writer
    from .train.signals import StopSignals

    comm = world()
    with StopSignals(comm) as signals:
        try:
            if comm.rank != 0:
                # every rank trains the same θ; rank 0 alone prints and writes (the others read its checkpoints)
                set_file_writer(False)
                with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                    return _train_ranks(args, comm, signals)
            return _train_ranks(args, comm, signals)
        except KeyboardInterrupt:
            if signals.received:
                print(f"mtpfit: stopped at once by a second signal after {signals.received}; the last checkpoint in "
                      f"{args.output} is kept (continue with --resume)", file=sys.stderr)
            else:
                print("mtpfit: interrupted before training started; nothing was trained", file=sys.stderr)
            return 130


def _train_ranks(args, comm, signals) -> int:
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    run = fit(TrainingConfig(**settings), log=print, comm=comm, stop=signals)
    if run.interrupted:
        print(f"mtpfit: {run.result.message}; the outputs and the checkpoint of that point are written in "
              f"{args.output} (continue with --resume)", file=sys.stderr)
        return 130
    return 0


def _tune(args) -> int:
    from .train.tune import format_ranking, tune

    # the tuning's own options, and a TOML's resume (each candidate's run resumes as the tuning decides)
    own = {"command", "config", "budget", "eta", "metric", "candidates", "output", "overwrite", "resume"}
    base = TrainingConfig(**{k: v for k, v in vars(args).items() if k not in own}, output=None)
    try:
        result = tune(base, args.candidates, budget=args.budget, eta=args.eta, metric=args.metric,
                      output=args.output, overwrite=args.overwrite, resume=args.resume, log=print)
    except KeyboardInterrupt:
        print(f"mtpfit tune: interrupted; the rounds so far are in {Path(args.output) / 'tune.json'} (--resume "
              "continues the tuning)", file=sys.stderr)
        return 130
    except RuntimeError as err:
        print(f"mtpfit tune: {err}", file=sys.stderr)
        return 1
    print(format_ranking(result))
    print(f"the winner's trained potential and run files: {result.run}")
    if result.toml is not None:
        print(f"wrote {result.toml}; train with it: mtpfit train --config {result.toml} --output RUN")
    return 0


def _with_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, taking defaults from the --config TOML file when one is given (command-line values win)."""
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        import math

        path = Path(args.config)
        try:
            config = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, RecursionError, tomllib.TOMLDecodeError) as err:
            raise ValueError(f"{path}: {err}") from err
        known = set(vars(args)) - {"command", "config"} | {"schedule_options", "hyper"}
        if args.command == "tune":   # a train TOML: the TrainingConfig fields tune has no option for pass through
            known |= {f.name for f in dataclasses.fields(TrainingConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {unknown}")
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        # argparse neither converts nor checks defaults that are not strings: check TOML values as the command
        # line's would be (species may also be integer type indices, as in `species = [0, 1]`)
        actions = {a.dest: a for a in sub.choices[args.command]._actions}

        def fits(action, v) -> bool:
            kind = {int: int, float: (int, float)}.get(action.type, (str, int) if action.dest == "species" else str)
            return (isinstance(v, kind) and not isinstance(v, bool)
                    and not (isinstance(v, float) and not math.isfinite(v))
                    and (action.choices is None or v in action.choices))

        for key, value in config.items():
            action = actions.get(key)
            if action is None and key not in ("schedule_options", "hyper"):
                continue  # a TrainingConfig field tune sets itself (optimizer, lr, max_seconds): checked there
            if action is None:  # schedule_options, hyper: keywords of the schedule and of the optimizer
                ok, wanted = isinstance(value, dict), "a table"
            elif action.nargs == 0:
                ok, wanted = isinstance(value, bool), "true or false"
            else:
                wanted = {int: "an integer", float: "a finite number"}.get(action.type, "a string")
                if action.choices is not None:
                    wanted += f" among {', '.join(map(str, action.choices))}"
                if action.nargs == "+":
                    ok = isinstance(value, list) and bool(value) and all(fits(action, v) for v in value)
                    wanted = f"a non-empty list, each {wanted}"
                else:
                    ok = fits(action, value)
            if not ok:
                raise ValueError(f"{path}: {key} must be {wanted}, found {value!r:.100}")
        sub.choices[args.command].set_defaults(**config)
        args = parser.parse_args(argv)
        args.schedule_options = config.get("schedule_options")
        args.hyper = config.get("hyper")
    return args


#: Top-level modules of the ``bench`` extra (pyproject.toml), needed by ``mtpfit bench`` and ``mtpfit report``.
_BENCH_EXTRA = {"pandas", "matplotlib", "dask", "distributed", "tqdm"}


@contextlib.contextmanager
def _bench_extra(command: str):
    """Turn a missing module of the bench extra into an error that says what to install."""
    try:
        yield
    except ModuleNotFoundError as err:
        if (err.name or "").partition(".")[0] not in _BENCH_EXTRA:
            raise
        raise ValueError(f"mtpfit {command} needs {err.name}, which is not installed: "
                         'pip install "mtpfit[bench]"') from None


def _bench(args) -> int:
    with _bench_extra("bench"):
        from .bench import load_campaign, run_campaign

        for path in args.campaigns:
            campaign = load_campaign(path, args.results)
            stale = campaign.stale()
            if stale and args.prune:
                for file in stale:
                    file.unlink()
                print(f"campaign {campaign.name}: removed {len(stale)} stale result file(s)")
            elif stale:
                print(f"campaign {campaign.name}: {len(stale)} result file(s) belong to no current run (a report "
                      "would include them); --prune removes them")
            if args.list:
                _list_runs(campaign)
                continue
            try:
                run_campaign(campaign, workers=args.workers, dask=args.dask)
            except KeyboardInterrupt:
                print(f"mtpfit bench: interrupted; the finished runs are saved in {campaign.results}, the others run "
                      "when the campaign is run again", file=sys.stderr)
                return 130
    return 0


def _list_runs(campaign) -> None:
    """``bench --list``: each run, done, todo or damaged (a damaged file is named by a warning and counts as
    todo: ``bench`` runs it again)."""
    import warnings

    from .bench import DamagedResultWarning

    print(f"campaign {campaign.name}: results in {campaign.results}")
    for spec in campaign.runs:
        path, problem = campaign.result_path(spec), campaign.problem(spec)
        state = "done" if problem is None else "todo" if not path.exists() else "damaged"
        if state == "damaged":
            warnings.warn(f"{path}: damaged result file ({problem}); `mtpfit bench` runs it again",
                          DamagedResultWarning, stacklevel=2)
        opt = spec["optimizer"]
        print(f"{state:<7}  {path.name}  {spec['dataset']['name']}  {spec['model']['name']}"
              f"  {opt.get('label', opt['name'])}  {opt.get('swept', {})}  seed {spec['seed']}")


def _report(args) -> int:
    with _bench_extra("report"):
        from .bench import write_report

        campaigns = args.campaigns if Path(args.campaigns).is_dir() else None
        print(f"wrote {write_report(args.results, campaigns, args.out)}")
    return 0


def _analyse(args) -> int:
    from .analysis import fisher_design, fisher_study, hessian_study

    train, validation, species, min_dist, max_dist = _load_data(args)
    loss = Loss(kind=args.loss)
    print(f"mtpfit {__version__}: {train} / validation {validation}")
    common = dict(min_dist=min_dist, max_dist=max_dist, loss=loss, init_interval=args.init_interval, seed=args.seed,
                  n_threads=args.threads)
    levels = args.levels or ([args.level] if args.what == "hessian" else [6, 8, 10, 12, 14, 16])
    if args.what == "design":
        fisher_design(train, validation, levels, species, args.output, optimizer=args.optimizer,
                      max_iter=args.max_iter, refit_iter=args.refit_iter, prune_fraction=args.prune_fraction,
                      max_prunes=args.max_prunes, **common)
    elif args.what == "fim":
        fisher_study(train, validation, levels, species, args.output, optimizer=args.optimizer,
                     max_iter=args.max_iter, sketch=args.sketch, **common)
    else:
        hessian_study(train, validation, levels, species, args.output, optimizers=args.optimizers,
                      epochs=args.epochs, batch_size=args.batch_size, max_iter=args.max_iter, probes=args.probes,
                      steps=args.steps, **common)
    print(f"wrote tables and plots to {args.output}")
    return 0


def _finetune_relax(args) -> int:
    from .relax import finetune_relax_study

    mtp = MTP.read(args.potential, species=_species_arg(args.species))
    names = mtp.species if mtp.named else None  # .cfg types are the potential's types (MLIP's convention)
    train = read_files(args.train, args.format, args.stress_order, species=names,
                       stress_units=args.stress_units)
    test = read_files(args.test, args.format, args.stress_order, species=names,
                      stress_units=args.stress_units)
    mtp = mtp.named_for(train.species() + test.species())
    print(f"mtpfit {__version__}: {mtp} from {args.potential}; {train} / test {test}")
    hyper = {} if args.optimizer in ("BFGS", "L-BFGS-B", "CG") else {"lr": args.lr}
    rows = finetune_relax_study(mtp, train, test, args.output, ks=args.k, etas=args.eta, rule=args.rule,
                                max_step=args.max_step, optimizer=args.optimizer, max_iter=args.max_iter,
                                batch_size=args.batch_size, mix=args.mix, amplitude=args.amplitude,
                                n_starts=args.starts, n_test_starts=args.test_starts,
                                fmax_minimum=args.fmax_minimum, fmax_relaxed=args.fmax, seed=args.seed,
                                n_threads=args.threads, hyperparameters=hyper)
    best = max(rows, key=lambda r: r["reduction_percent"])
    print(f"best: k = {best['k']}, η = {best['eta']}: test relaxed-structure error {best['test_relaxed_before']:.4f} → "
          f"{best['test_relaxed_after']:.4f} Å ({best['reduction_percent']:+.1f} %; Dramko et al. report about 32 % "
          f"on silicon)")
    print(f"wrote tables, plots and potentials to {args.output}")
    return 0


def _evaluate(args) -> int:
    mtp = read_potential(args.potential, species=_species_arg(args.species))
    names = mtp.species if mtp.named else None  # .cfg types are the potential's types (MLIP's convention)
    data = read_files(args.data, args.format, args.stress_order, species=names,
                      stress_units=args.stress_units)
    mtp = mtp.named_for(data.species())
    predictions = Objective(mtp, data, n_threads=args.threads).predict()
    errors = error_metrics(data, predictions)
    print(json.dumps(errors, indent=2) if args.json else format_errors(errors, f"{args.potential} on {data.name}"))
    if args.output:
        from .io.write import write_predictions

        print(f"wrote the predictions to {write_predictions(args.output, data, predictions, species=mtp.species)}",
              file=sys.stderr if args.json else sys.stdout)
    if args.plot:
        from .analysis.parity import parity_plot

        print(f"wrote the parity plot to {parity_plot(args.plot, {data.name: (data, predictions)})}",
              file=sys.stderr if args.json else sys.stdout)
    return 0


def _active_set(args, mtp):
    """The active set of POT, from its file next to the potential or built (and saved) from TRAIN."""
    from .active import ActiveSet, active_set_path, build_active_set

    mode = args.mode
    path = active_set_path(args.potential)
    if path.exists():
        try:
            active = ActiveSet.load(path, mtp)
        except ValueError as err:
            print(f"mtpfit {args.command}: {err}; building it again from {args.train}", file=sys.stderr)
        else:
            if mode is None or active.mode == mode:
                return active
            if args.command == "select":
                # select --update builds on the saved set: replacing it would drop the selections it holds
                raise ValueError(f"{path} is a {active.mode}-mode active set and --mode {mode} was asked; select "
                                 f"with --mode {active.mode} (or without --mode), or rebuild the file from "
                                 f"{args.train} in {mode} mode with mtpfit grade --mode {mode}")
            print(f"mtpfit {args.command}: {path} is a {active.mode}-mode set; building a {mode}-mode one from "
                  f"{args.train}", file=sys.stderr)
    mode = mode or "configuration"
    names = mtp.species if mtp.named else None
    train = read_files([args.train], args.format, args.stress_order, species=names, stress_units=args.stress_units)
    active = build_active_set(mtp.named_for(train.species()), train, n_threads=args.threads, mode=mode)
    active.save(path)
    what = "configurations" if mode == "configuration" else "atoms' neighbourhoods"
    print(f"active set of {len(active.sources)} {what} of {train.name} written to {path}")
    return active


def _grade_or_select(args) -> int:
    from .active import active_set_path, atom_grades, grade, select
    from .io import write_cfg

    mtp = MTP.read(args.potential)
    active = _active_set(args, mtp)
    names = mtp.species if mtp.named else None
    data = read_files([args.configurations], args.format, args.stress_order, species=names, stress_units=args.stress_units)
    mtp = mtp.named_for(data.species())
    if args.command == "grade":
        # per atom (neighbourhood mode) the configurations' grades are their atoms' largest: one pass for both
        per_atom = (atom_grades(active, mtp, data, n_threads=args.threads) if active.mode == "neighbourhood"
                    else [None] * len(data))
        grades = (np.array([a.max() for a in per_atom]) if active.mode == "neighbourhood"
                  else grade(active, mtp, data, n_threads=args.threads))
        for c, g in zip(data, grades):
            print(f"{g:12.6g}  {c.source}")
        print(f"max γ {grades.max():.6g}; {int(np.sum(grades > 1.0 + 1e-9))} of {len(data)} configurations "
              "extrapolate (γ > 1; MLIP's usual thresholds in MD: 2 to select, 10 to stop)")
        if args.output and Path(args.output).suffix.lower() in (".xyz", ".extxyz"):
            import ase.io

            # extxyz: γ in each frame's info, and in neighbourhood mode each atom's γ as the array nbh_grades
            frames = []
            for c, g, atoms_g in zip(data, grades, per_atom):
                atoms = c.to_ase()
                atoms.info["MV_grade"] = float(g)
                if atoms_g is not None:
                    atoms.arrays["nbh_grades"] = atoms_g
                frames.append(atoms)
            ase.io.write(args.output, frames, format="extxyz")
            print(f"wrote {args.output}")
            return 0
        # .cfg as MLIP writes it: γ as the feature MV_grade, in neighbourhood mode each atom's γ as the AtomData
        # column nbh_grades (MV_grade their largest, the same float)
        chosen, written = None, [dataclasses.replace(c, features={**c.features, "MV_grade": f"{g:.17g}"},
                                                     atom_data={**c.atom_data, "nbh_grades": atoms_g}
                                                     if atoms_g is not None else c.atom_data)
                                 for c, g, atoms_g in zip(data, grades, per_atom)]
    else:
        chosen, updated = select(active, mtp, data, threshold=args.threshold, max_new=args.max,
                                 n_threads=args.threads)
        written = [data[int(k)] for k in chosen]
        print(f"selected {len(written)} of {len(data)} candidates (γ > {args.threshold:g}"
              + (f", at most {args.max}" if args.max is not None else "")
              + (", by their atoms' neighbourhoods" if active.mode == "neighbourhood" else "") + ")")
    if args.output and written:
        write_cfg(args.output, written, species_order=mtp.species)
        print(f"wrote {args.output}")
    if args.command == "select":
        # after the selection is written: a set naming configurations that were never written would mislead
        target = (Path(args.active_set_output) if args.active_set_output
                  else active_set_path(args.potential) if args.update and len(chosen) else None)
        if target is not None:
            updated.save(target)
            print(f"updated active set ({len(chosen)} configurations swapped in) written to {target}")
        elif args.update:
            print(f"nothing selected: {active_set_path(args.potential)} unchanged")
    return 0


def _learn(args) -> int:
    from .active.learn import LearningConfig, learn

    config = LearningConfig.from_toml(args.learn_config)
    changes = {k: v for k, v in (("max_cycles", args.max_cycles), ("threads", args.threads)) if v is not None}
    result = learn(dataclasses.replace(config, **changes) if changes else config)
    print(f"{result.reason}: {len(result.labelled)} labelled configurations; potential {result.potential}; "
          f"summary {result.files['summary_csv']}")
    return 0


def _lammps(args) -> int:
    from .lammps import export_active_set, plugin_path

    # first the active set: its errors (no set, another potential, configuration mode) need no build to show
    exported = export_active_set(args.extrapolation) if args.extrapolation else None
    if exported:
        print(f"wrote {exported}", file=sys.stderr)
    try:
        path = plugin_path(build=not args.no_build)
    except RuntimeError as err:  # the build failed or cmake is missing: the message says which
        raise ValueError(str(err)) from None
    print(path if args.path else f"plugin load {path}")
    if exported and not args.path:
        print(f"pair_style mtp {args.extrapolation} extrapolation {exported}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mtpfit`` command.

    Returns the process exit status: 0 on success, 2 for bad input (the message names the file,
    line or configuration), 130 when training was interrupted (results are still written).
    """
    parser = _parser()
    with warnings.catch_warnings():
        warnings.formatwarning = _format_warning
        try:
            args = _with_config(parser, argv)
            if args.command == "train" and args.optimizer is not None:   # None: the model's default trainer
                args.optimizer = canonical_optimizer(args.optimizer)
            return {"train": _train, "evaluate": _evaluate, "bench": _bench, "report": _report,
                    "analyse": _analyse, "finetune-relax": _finetune_relax, "lammps": _lammps, "grade": _grade_or_select,
                    "select": _grade_or_select, "learn": _learn, "tune": _tune}[args.command](args)
        except (FormatError, ValueError, OSError, KeyError, FloatingPointError, ImportError) as err:
            print(f"mtpfit: error: {err}", file=sys.stderr)
            return 2


def _format_warning(message, category, filename, lineno, line=None) -> str:
    # the message names the file and configuration; the package's own source line would only distract (the format,
    # not the display: warnings recorded by a caller, e.g. pytest.warns, still reach the recorder)
    return f"mtpfit: warning ({category.__name__}): {message}\n"
