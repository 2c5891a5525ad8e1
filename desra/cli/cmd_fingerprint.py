"""`desra fingerprint`: register, verify and attack SR-model fingerprints (Quan et al., ICCV 2023)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", type=Path, default=None, help="workspace holding fingerprints.sqlite (default: $DESRA_WORKSPACE or ./desra-workspace)")
    parser.add_argument("--device", default="cpu", help="torch device for the critical-image optimisation (default: cpu)")


def _add_test(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sigma", type=float, default=0.015, help="std of one feature difference between independent models (default: 0.015)")
    parser.add_argument("-p", "--p", type=float, default=0.05, dest="p", help="significance level of the chi-squared test (default: 0.05)")


def _add_critical(parser: argparse.ArgumentParser) -> None:
    from desra.fingerprint.critical import DOWNSAMPLE_MODES

    parser.add_argument("--iterations", type=int, default=5000, help="Adam iterations (paper: 5000)")
    parser.add_argument("--size", type=int, default=128, help="critical-image side in pixels (paper: 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the N(0, 1) initialisation")
    parser.add_argument("--downsample", choices=DOWNSAMPLE_MODES, default="bicubic", help="degradation D of Eq. 1 (default: bicubic; area = average pooling)")


def _critical_config(args):
    """The CriticalConfig that the flags added by :func:`_add_critical` describe."""
    from desra.fingerprint.critical import CriticalConfig

    return CriticalConfig(size=args.size, iterations=args.iterations, seed=args.seed, downsample=args.downsample)


def register(subparsers) -> None:
    """Add `desra fingerprint register|verify|attack|list` to the `desra` parser."""
    group = subparsers.add_parser("fingerprint", help="ownership verification of SR models by critical-image fingerprints")
    sub = group.add_subparsers(dest="fingerprint_command", metavar="SUBCOMMAND", required=True)

    reg = sub.add_parser("register", help="extract a model's critical image and store its fingerprint")
    reg.add_argument("model", help="checkpoint file or registered model id")
    reg.add_argument("--name", required=True, help="name to register the fingerprint under")
    _add_critical(reg)
    reg.add_argument("--replace", action="store_true", help="overwrite an existing fingerprint of that name")
    _add_common(reg)
    reg.set_defaults(func=_register)

    ver = sub.add_parser("verify", help="is SUSPECT derived from the registered model NAME?")
    ver.add_argument("suspect", help="checkpoint file or registered model id")
    ver.add_argument("--against", required=True, help="registered fingerprint name")
    ver.add_argument("--json", action="store_true", help='print {"match", "distance", "eta", "p_value", "lineage", "lineage_check"} as JSON '
                     "(lineage: what the suspect's metadata claims; it never changes the verdict)")
    _add_test(ver)
    _add_common(ver)
    ver.set_defaults(func=_verify)

    att = sub.add_parser("attack", help="prune 5 %%, int8-quantise and fine-tune MODEL; verify each copy against NAME")
    att.add_argument("model", help="checkpoint file or registered model id (the registered source itself)")
    att.add_argument("--against", required=True, help="registered fingerprint name of MODEL")
    att.add_argument("--attacks", default="prune,int8,finetune", help="comma-separated subset of prune,int8,finetune")
    att.add_argument("--finetune-iterations", type=int, default=500, help="fine-tuning attack iterations (paper: 500)")
    att.add_argument("--out", type=Path, default=None, help="folder to save the attacked checkpoints in (.safetensors)")
    att.add_argument("--json", action="store_true", help="print the verdicts as a JSON object keyed by attack")
    _add_test(att)
    _add_common(att)
    att.set_defaults(func=_attack)

    cross = sub.add_parser("crosscheck", help="fingerprint several models, compare every pair and attack each one")
    cross.add_argument("models", nargs="+", help="checkpoint files or registered model ids")
    _add_critical(cross)
    cross.add_argument("--attacks", default="prune,int8,finetune", help="comma-separated subset of prune,int8,finetune, or 'none'")
    cross.add_argument("--finetune-iterations", type=int, default=500, help="fine-tuning attack iterations (paper: 500)")
    cross.add_argument("--json", action="store_true", help="print names, distance matrix, eta, pairs and attack verdicts as JSON")
    cross.add_argument("--rows", type=Path, default=None, help="append each finished row (a fingerprint, or one attack on one model) to this JSON-lines file; "
                       "rerunning with the same file resumes, skipping finished rows")
    _add_test(cross)
    cross.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    cross.set_defaults(func=_crosscheck)

    lst = sub.add_parser("list", help="list registered fingerprints")
    _add_common(lst)
    lst.set_defaults(func=_list)


def _registry(args) -> Path:
    from desra.service.fingerprints import registry_file

    return registry_file(args.workspace)


def _bar(desc: str, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False)


def _progress(desc: str):
    state = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = _bar(desc, total)
        state["bar"].update(done - state["bar"].n)
        if done >= total:
            state.pop("bar").close()

    return update


def _register(args) -> int:
    from desra.service.fingerprints import register_model

    config = _critical_config(args)
    path = _registry(args)
    record = register_model(args.model, args.name, path, config, replace=args.replace, device=args.device,
                            progress=_progress("critical image"))
    print(f"registered {args.name!r} (x{record.scale}, {config.iterations} iterations) in {path}")
    return 0


def _print_verdict(label: str, verdict) -> None:
    word = "MATCH (derived)" if verdict.match else "no match (independent)"
    print(f"{label}: {word}  d={verdict.distance:.3e}  eta={verdict.eta:.3e}  p={verdict.p_value:.3g}")


def _verify(args) -> int:
    from desra.service.fingerprints import verify_suspect

    verification = verify_suspect(args.suspect, _registry(args), args.against, sigma=args.sigma, p=args.p, device=args.device,
                                  progress=_progress("critical image"))
    if args.json:
        print(json.dumps(verification.to_json()))
    else:
        _print_verdict(f"{args.suspect} vs {args.against}", verification.result.verdict)
        for line in verification.lineage.lines():
            print(f"  {line}")
    return 0


def _parse_attacks(text: str, allow_none: bool = False) -> list[str]:
    from desra.core.errors import ConfigError
    from desra.fingerprint.attacks import ATTACKS

    if allow_none and text.strip() == "none":
        return []
    attacks = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise ConfigError(f"--attacks got {text!r}; expected a comma-separated subset of {','.join(ATTACKS)}")
    return attacks


def _attack(args) -> int:
    from desra.fingerprint.pipeline import attack_suite
    from desra.fingerprint.verify import get_fingerprint
    from desra.models.checkpoint import load_model

    attacks = _parse_attacks(args.attacks)
    model = load_model(args.model, device=args.device)
    source = get_fingerprint(_registry(args), args.against)
    bars: dict[str, object] = {}

    def progress(name: str, done: int, total: int) -> None:
        bars.setdefault(name, _progress(name))(done, total)

    results = attack_suite(model, source, attacks=attacks, finetune_iterations=args.finetune_iterations, device=args.device, progress=progress)
    if args.out is not None:
        from desra.service.fingerprints import save_attacked

        save_attacked(results, model, args.out, finetune_iterations=args.finetune_iterations)
    if args.json:
        print(json.dumps({item.attack: item.result.verdict.to_json() for item in results}))
    else:
        for item in results:
            _print_verdict(f"{item.attack:9s}", item.result.verdict)
    return 0 if all(item.result.verdict.match for item in results) else 3


def _read_rows(path: Path | None) -> list[dict]:
    from desra.core.errors import ConfigError

    if path is None or not path.is_file():
        return []
    from desra.core.atomic import atomic_write_text

    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines):
                raise ConfigError(f"{path} line {number} is not JSON; pass another --rows file") from None
            # An interrupted write leaves at most a truncated last line: drop it (its row is redone) so appends start clean.
            atomic_write_text(path, "".join(line + "\n" for line in lines[:-1]))
    return rows


def _crosscheck(args) -> int:
    import os

    from desra.fingerprint.pipeline import cross_check
    from desra.fingerprint.relations import (
        DECIDING,
        DERIVED,
        format_table,
        model_facts,
        relation,
        relation_table,
    )
    from desra.models.checkpoint import load_model

    attacks = _parse_attacks(args.attacks, allow_none=True)
    models = [load_model(m, device=args.device) for m in args.models]
    facts = [model_facts(m) for m in models]
    config = _critical_config(args)
    bars: dict[str, object] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bars.setdefault(stage, _progress(stage))(done, total)

    def append_row(row: dict) -> None:
        with open(args.rows, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    if args.rows is not None:
        args.rows.parent.mkdir(parents=True, exist_ok=True)
    check = cross_check(
        models, config, attacks=attacks, finetune_iterations=args.finetune_iterations, sigma=args.sigma, p=args.p,
        device=args.device, done_rows=_read_rows(args.rows), on_row=append_row if args.rows is not None else None, progress=progress,
    )
    n = len(check.names)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    kinds = {(i, j): relation(facts[i], facts[j]) for i, j in pairs}
    # Pairs of a recorded lineage (both stages of one zoo config, a fine-tune and its source) are derived;
    # only other data, architecture or scale decide the verdict (issue 16). Seed siblings get their own row.
    derived = [pair for pair in pairs if kinds[pair] == DERIVED]
    independent = [pair for pair in pairs if kinds[pair] in DECIDING]
    confused = [(check.names[i], check.names[j]) for i, j in independent if check.distances[i, j] < check.eta]
    failed = [(m, a) for m, verdicts in check.attacks.items() for a, v in verdicts.items() if not v.match]
    table = relation_table(facts, check.distances, check.eta, {m: {a: v.distance for a, v in vs.items()} for m, vs in check.attacks.items()})
    if args.json:
        print(json.dumps({
            "names": list(check.names),
            "distances": check.distances.tolist(),
            "eta": check.eta,
            "matching_pairs": [(check.names[i], check.names[j]) for i, j in pairs if check.distances[i, j] < check.eta],
            "pairs": [{"pair": [check.names[i], check.names[j]], "relation": kinds[i, j], "distance": check.distances[i, j],
                       "match": bool(check.distances[i, j] < check.eta)} for i, j in pairs],
            "relations": [row.to_json() for row in table],
            "deciding_relations": list(DECIDING),
            "derived_pairs": [{"pair": [check.names[i], check.names[j]], "distance": check.distances[i, j], "match": bool(check.distances[i, j] < check.eta)} for i, j in derived],
            "independent_pairs": len(independent),
            "independent_confused": confused,
            "attacks": {m: {a: v.to_json() for a, v in verdicts.items()} for m, verdicts in check.attacks.items()},
            "seconds": check.seconds,
            "devices": check.devices,
        }))
        return 0 if not (failed or confused) else 3
    smallest = min((check.distances[i, j] for i, j in independent), default=None)
    print(f"eta = {check.eta:.3e}; smallest distance between independent models ({', '.join(DECIDING)}): " + (f"{smallest:.3e}" if smallest is not None else "n/a"))
    print(f"independent pairs judged derived: {len(confused)}/{len(independent)}" + (": " + ", ".join(f"{a} ~ {b}" for a, b in confused) if confused else ""))
    for line in format_table(table, check.eta):
        print(line)
    for i, j in derived:
        verdict = "match" if check.distances[i, j] < check.eta else "no match"
        print(f"derived pair {check.names[i]} -> {check.names[j]}: d={check.distances[i, j]:.3e} ({verdict})")
    for name, verdicts in check.attacks.items():
        print(f"{name}: " + "  ".join(f"{a} {'ok' if v.match else 'FAILED'} (d={v.distance:.2e})" for a, v in verdicts.items()))
    for name in check.names:
        print(f"{name} rows: " + "  ".join(f"{row} {check.seconds[name][row]:.0f} s on {check.devices[name].get(row) or 'unrecorded'}" for row in check.seconds[name]))
    print(f"attacks survived: {sum(v.match for vs in check.attacks.values() for v in vs.values())}/{sum(len(vs) for vs in check.attacks.values())}")
    return 0 if not (failed or confused) else 3


def _list(args) -> int:
    from desra.fingerprint.verify import get_fingerprint, list_fingerprints

    path = _registry(args)
    names = list_fingerprints(path)
    if not names:
        print(f"no fingerprints registered in {path}")
    for name in names:
        record = get_fingerprint(path, name)
        print(f"{name}\tx{record.scale}\t{record.config['iterations']} it\t{record.source}")
    return 0
