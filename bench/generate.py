"""The demo's generation pass on the local backend: today's serial `local_complete` against `LLM('local')`'s batched
decoding (issue 14), same requests, fresh (no cache), one run; plus llama.cpp's own single-stream decode speed and
the batcher without prefix sharing (each slot computes its whole prompt).

    python bench/generate.py                 # a share of the demo's requests (--share), both sides
    python bench/generate.py --share 1.0     # all of them

The requests are those `generate` sends in the demo (`llm_augment demo`): the first round of `llm_pool` at seed 0
(the bundled ncte_uptake subset, calls_per_label=10, responses_per_call=5, max_tokens 240, presence penalty 0.6).
"""
import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_augment.cli import DEMO_SWEEP
from llm_augment.data import task_specs
from llm_augment.experiment import _listify, config_from_dict, pool_seed, split_for
from llm_augment.generate import LOCAL_PRESENCE_PENALTY, plan_requests
from llm_augment.llm import LLM, LOCAL_SLOTS, LocalBatcher, as_request, local_batcher, llama_threads, load_local, local_complete, smollm2_path


def demo_requests(seed:int=0) -> list[dict]:
    "The requests the demo's generation pass sends at training seed `seed` (first round of `llm_pool`)."
    cfg = config_from_dict({**DEMO_SWEEP['base'], 'seeds': DEMO_SWEEP['seeds']})
    splits = split_for(cfg, seed)
    tasks = task_specs(cfg.task, splits.train, per_item=bool(cfg.item_col), seed=pool_seed(cfg, seed))
    plan = plan_requests(tasks, None, cfg.calls_per_label, cfg.responses_per_call, _listify(cfg.temperature),
                         pool_seed(cfg, seed), presence_penalty=LOCAL_PRESENCE_PENALTY)
    return [p['request'] for p in plan]


def cpu_model() -> str:
    out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
    return next((l.split(':', 1)[1].strip() for l in out.splitlines() if l.startswith('Model name')), 'unknown')


def single_stream(llama, tokens:int=128) -> tuple[int, float, float]:
    "llama.cpp alone on one prompt: (completion tokens, wall s, llama.cpp's own decode tokens/s from its perf counters)."
    import llama_cpp
    llama_cpp.llama_perf_context_reset(llama.ctx)
    start = time.perf_counter()
    out = llama.create_completion('Once upon a time, in a small village by the sea,', max_tokens=tokens, temperature=0.0,
                                  logit_bias={llama.token_eos(): -100.0}) # no early end: a full `tokens` decode
    wall = time.perf_counter() - start
    perf = llama_cpp.llama_perf_context(llama.ctx)
    return out['usage']['completion_tokens'], wall, perf.n_eval/(perf.t_eval_ms/1e3)


def row(name, completions, wall, note=''):
    n, tokens = len(completions), sum(c.completion_tokens for c in completions)
    return f'{name:<38} {n:>9} {tokens:>11} {wall:>8.1f} {tokens/wall:>9.1f} {n/wall:>11.3f}  {note}', tokens/wall


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--share', type=float, default=0.4, help="share of the demo's requests to run on both sides (default 0.4)")
    p.add_argument('--slots', type=int, default=LOCAL_SLOTS, help=f'sequences decoded together (default LOCAL_SLOTS={LOCAL_SLOTS})')
    args = p.parse_args()
    everything = [as_request(r) for r in demo_requests()]
    requests = everything[:max(1, round(args.share*len(everything)))]
    load = os.getloadavg()
    print(f"# bench/generate.py: the demo's generation requests (seed 0, first round of llm_pool: {len(everything)} requests, "
          f"max_tokens {everything[0]['max_tokens']}, temperature {everything[0]['temperature']}, presence penalty "
          f"{everything[0].get('presence_penalty')}); {len(requests)} of {len(everything)} run on each side"
          + (' (a share: --share 1.0 runs all)' if len(requests) < len(everything) else ''))
    print(f'# model: {smollm2_path().name}; CPU: {cpu_model()}, {os.cpu_count()} cores, llama.cpp threads {llama_threads()}; '
          f'load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start (cores shared with other work)')
    llama = load_local(str(smollm2_path()))
    n, wall, own = single_stream(llama)
    print(f'{"side":<38} {"responses":>9} {"compl. tok":>11} {"wall s":>8} {"tokens/s":>9} {"responses/s":>11}  note')
    print('-'*110)
    print(f'{"llama.cpp single stream (reference)":<38} {1:>9} {n:>11} {wall:>8.1f} {n/wall:>9.1f} {1/wall:>11.3f}  '
          f'create_completion on one prompt, EOS barred; llama.cpp perf counters: {own:.1f} tokens/s decode')
    start = time.perf_counter()
    serial = [local_complete(llama, r) for r in requests]
    line, today = row("today: serial local_complete", serial, time.perf_counter() - start, "one create_chat_completion at a time (LLM('local', concurrency=1))")
    print(line)
    computing = LocalBatcher(llama, args.slots, share_prefixes=False)
    start = time.perf_counter()
    unshared = [f.result() for f in [computing.submit(r) for r in requests]]
    line, _ = row(f'batched, {args.slots} slots, no prefix sharing', unshared, time.perf_counter() - start,
                  f'LocalBatcher(share_prefixes=False): prompt tokens {computing.fed} computed')
    print(line)
    with tempfile.TemporaryDirectory() as cache_dir:
        llm = LLM('local', cache_dir=cache_dir, concurrency=args.slots)
        start = time.perf_counter()
        batched = llm.batch(requests, progress=False)
        sharing = local_batcher(llm.model_path, args.slots)
        line, new = row(f"new: LLM('local', concurrency={args.slots})", batched, time.perf_counter() - start,
                        f"fresh cache; {llm.usage['failed']} failed; prompt tokens {sharing.fed} computed, {sharing.borrowed} copied; "
                        f"same texts as serial: {sum(a.text == b.text for a, b in zip(serial, batched))}/{len(requests)}, "
                        f"as without sharing: {sum(a.text == b.text for a, b in zip(unshared, batched))}/{len(requests)}")
        print(line)
        again = LLM('local', cache_dir=Path(cache_dir)/'rerun', concurrency=args.slots).batch(requests[::-1], progress=False)[::-1]
    same = sum(a.text == b.text for a, b in zip(batched, again))
    print(f'# rerun of the new side in reverse order, fresh cache: {same}/{len(requests)} identical texts; '
          f'load average {os.getloadavg()[0]:.2f} at the end')
    print(f'speedup={new/today:.2f}')


if __name__ == '__main__': main()
