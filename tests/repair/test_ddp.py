"""Multi-process fine-tuning: `torchrun --nproc_per_node 2 -m desra finetune` (DDP, gloo on CPU) with
the embedded pair desra-demo-x4 and its spectral-norm discriminator, killed with SIGKILL and resumed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from desra.repair.finetune import load_train_data, make_batch_fn
from desra.train.loop import latest_checkpoint, list_checkpoints, load_checkpoint

ITERS = 12

# Runs the real CLI in each torchrun process and records, per rank, the batches that rank trained
# on and the networks it ended with (only possible from inside the process).
PROBE = textwrap.dedent('''
    import sys

    import torch

    import desra.repair.finetune
    import desra.train.distributed
    import desra.train.loop
    from desra.cli import main

    probe_dir, argv = sys.argv[1], sys.argv[2:]
    seen, networks = [], {}
    make_batch_fn, train = desra.repair.finetune.make_batch_fn, desra.train.loop.train

    def recording_make_batch_fn(*args, **kwargs):
        batch_fn = make_batch_fn(*args, **kwargs)

        def recorded(iteration, rank=0):
            lr, hr = batch_fn(iteration, rank)
            seen.append((iteration, lr.clone()))
            return lr, hr
        return recorded

    def recording_train(config, generator, discriminator, *args, **kwargs):
        networks["generator"], networks["discriminator"] = generator, discriminator
        return train(config, generator, discriminator, *args, **kwargs)

    desra.repair.finetune.make_batch_fn, desra.train.loop.train = recording_make_batch_fn, recording_train
    code = main(argv)
    rank = desra.train.distributed.launch_rank()
    torch.save({"batches": seen, "generator": networks["generator"].state_dict(),
                "discriminator": networks["discriminator"].state_dict()}, f"{probe_dir}/rank{rank}.pt")
    sys.exit(code)
''')


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, ...
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _events(run) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def test_rank_zero_draws_the_one_process_batches_and_other_ranks_their_own(shared_set):
    data = load_train_data(shared_set.root, patch=32)
    batch_fn = make_batch_fn(data, batch=2, seed=0)
    one_process = batch_fn(3)[0].numpy()
    assert np.array_equal(batch_fn(3, 0)[0].numpy(), one_process)
    assert not np.array_equal(batch_fn(3, 1)[0].numpy(), one_process)
    assert np.array_equal(batch_fn(3, 1)[0].numpy(), batch_fn(3, 1)[0].numpy())


@pytest.mark.slow
def test_torchrun_two_processes_train_in_sync_write_once_and_resume_after_kill(shared_set, tmp_path):
    import torch

    from desra.models.pairs import load_pair

    run, probes = tmp_path / "run", tmp_path / "probes"
    probes.mkdir()
    flags = ["finetune", "--set", str(shared_set.root), "--pair", "desra-demo-x4", "--iters", str(ITERS),
             "--patch", "32", "--batch", "2", "--save-every", "2", "--device", "cpu", "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    # 1. Start, then SIGKILL torchrun after the first checkpoint. Its workers run in sessions of
    # their own; they must die with it rather than train on beside the resumed run.
    process = subprocess.Popen(_torchrun("-m", "desra", *flags), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 180
    while latest_checkpoint(run) is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "torchrun ended before its first checkpoint could be awaited"
    workers = _children(process.pid)
    assert len(workers) == 2
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "torchrun workers outlived their launcher"
    killed_at = list_checkpoints(run)[-1][0]
    assert killed_at < ITERS and not (run / "model.safetensors").exists()
    events_before = len(_events(run))

    # 2. The same command with --resume, recorded from inside both processes; 3. once more, on the
    # finished run (a new torchrun: a process joins torchrun's process group once).
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    done = subprocess.run(_torchrun(str(script), str(probes), *flags, "--resume"),
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    again = subprocess.run(_torchrun("-m", "desra", *flags, "--resume"), capture_output=True, text=True,
                           timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-3000:]

    # Rank 0 alone wrote the run folder: one line per event, one "fine-tuned" report per call.
    assert [i for i, _ in list_checkpoints(run)] == [ITERS - 4, ITERS - 2, ITERS]
    assert done.stdout.count("fine-tuned") == 1 == again.stdout.count("fine-tuned")  # from rank 0 only
    resumed = _events(run)[events_before:]
    assert (resumed[0].get("event"), resumed[0]["iter"]) == ("start", killed_at)
    logged = [e["iter"] for e in resumed if "losses" in e]
    assert logged == list(range(killed_at + 2, ITERS + 1, 2))  # continued after the kill, each step once
    assert [e["iter"] for e in resumed if e.get("event") == "checkpoint"] == logged
    # The second --resume found the run finished: it trained nothing and ended at the same iteration.
    first_done = next(i for i, e in enumerate(resumed) if e.get("event") == "done")
    assert resumed[first_done]["iter"] == ITERS
    assert [(e.get("event"), e["iter"]) for e in resumed[first_done + 1:]] == [("start", ITERS), ("done", ITERS)]
    run_info = json.loads((run / "run.json").read_text())
    assert run_info["processes"] == 2 and run_info["global_batch"] == 4
    for name in ("model.safetensors", "generator.safetensors", "model_basicsr.pth", "options.yml"):
        assert (run / name).is_file()

    # Each rank trained on its own crops (rank 0 on exactly the one-process ones) ...
    rank0, rank1 = (torch.load(probes / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    iterations = [i for i, _ in rank0["batches"]]
    assert iterations == list(range(killed_at + 1, ITERS + 1)) == [i for i, _ in rank1["batches"]]
    one_process = make_batch_fn(load_train_data(shared_set.root, patch=32), batch=2, seed=0)
    for (i, lr0), (_, lr1) in zip(rank0["batches"], rank1["batches"], strict=True):
        assert torch.equal(lr0, one_process(i)[0]) and not torch.equal(lr0, lr1)
    # ... yet both ended with the same generator and discriminator (spectral-norm buffers included),
    # equal to rank 0's checkpoint and changed from the shipped GAN model.
    final = load_checkpoint(run / "ckpt" / f"iter_{ITERS:06d}.pt")
    for key in ("generator", "discriminator"):
        assert rank0[key].keys() == rank1[key].keys() == final[key].keys()
        for name, tensor in rank0[key].items():
            assert torch.equal(tensor, rank1[key][name]), f"{key}.{name} differs between ranks"
            assert torch.equal(tensor, final[key][name])
    assert any(name.endswith("weight_u") for name in rank0["discriminator"])
    shipped = load_pair("desra-demo-x4")[1].module.state_dict()
    assert any(not torch.equal(shipped[name], rank0["generator"][name]) for name in shipped)
    # And the killed-and-resumed run ended where the same command run straight through ends.
    straight = tmp_path / "straight"
    whole = subprocess.run(_torchrun("-m", "desra", *flags[:-1], str(straight)), capture_output=True, text=True,
                           timeout=600, env=env, check=False)
    assert whole.returncode == 0, whole.stderr[-3000:]
    uninterrupted = load_checkpoint(straight / "ckpt" / f"iter_{ITERS:06d}.pt")
    for key in ("generator", "ema", "discriminator"):
        assert final[key].keys() == uninterrupted[key].keys()
        for name, tensor in final[key].items():
            torch.testing.assert_close(tensor, uninterrupted[key][name], rtol=0, atol=1e-6, msg=f"{key}.{name}")
