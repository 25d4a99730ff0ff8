"""The demo's generation pass on the local backend: the serial `local_complete` (one request at a time, the backend
before issue 14) against `LLM('local')`'s batched decoding, same requests, fresh (no cache); plus llama.cpp's own
single-stream decode speed, the batcher without prefix sharing, and the F16 copy of the weights (`f16_copy`).

    python bench/generate.py                 # a share of the demo's requests (--share), every side
    python bench/generate.py --share 1.0     # all of them

The requests are those `generate` sends in the demo (`llm_augment demo`): the first round of `llm_pool` at seed 0
(the bundled ncte_uptake subset, calls_per_label=10, responses_per_call=5, max_tokens 240, presence penalty 0.6).
Each side runs in a fresh process, one after the other: llama.cpp's OpenMP threads stay behind in a process after
a decoding thread is done, and a side measured in the same process as an earlier one ran up to 1.5x slower
(101.7 against 67.1 tokens/s for the same batcher twice, on the machine of bench/README.md).
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_augment.cli import DEMO_SWEEP
from llm_augment.data import task_specs
from llm_augment.experiment import _listify, config_from_dict, pool_seed, split_for
from llm_augment.generate import LOCAL_PRESENCE_PENALTY, plan_requests
from llm_augment.llm import LLM, LOCAL_SLOTS, LocalBatcher, as_request, f16_copy, llama_threads, load_local, local_batcher, local_complete, smollm2_path

SIDES = { # side: (label, note)
    'serial': ("before: serial local_complete", "one create_chat_completion at a time (LLM('local', concurrency=1))"),
    'unshared': ('batched, no prefix sharing', 'LocalBatcher(share_prefixes=False): every slot computes its whole prompt'),
    'new': ("new: LLM('local')", 'batched, prefix sharing: the default'),
    'new_reversed': ("LLM('local'), requests reversed", 'the same, requests in reverse order'),
    'f16': ("LLM('local', model=f16_copy(...))", 'the same weights as F16'),
    'f16_reversed': ('F16, requests reversed', 'the same, requests in reverse order'),
}


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


def single_stream(model_path:str, tokens:int=128) -> dict:
    "llama.cpp alone on one prompt: completion tokens, wall s, and llama.cpp's own decode tokens/s from its perf counters."
    import llama_cpp
    llama = load_local(model_path)
    llama_cpp.llama_perf_context_reset(llama.ctx)
    start = time.perf_counter()
    out = llama.create_completion('Once upon a time, in a small village by the sea,', max_tokens=tokens, temperature=0.0,
                                  logit_bias={llama.token_eos(): -100.0}) # no early end: a full `tokens` decode
    wall = time.perf_counter() - start
    perf = llama_cpp.llama_perf_context(llama.ctx)
    return dict(texts=[out['choices'][0]['text']], tokens=out['usage']['completion_tokens'], wall=wall, own=perf.n_eval/(perf.t_eval_ms/1e3))


def worker(side:str, share:float, slots:int) -> dict:
    "One side in this process."
    if side.startswith('single_'): return single_stream(str(f16_copy(smollm2_path()) if side == 'single_f16' else smollm2_path()))
    requests = [as_request(r) for r in demo_requests()]
    requests = requests[:max(1, round(share*len(requests)))]
    order = slice(None, None, -1) if side.endswith('_reversed') else slice(None)
    facts = {}
    start = time.perf_counter()
    if side == 'serial':
        llama = load_local(str(smollm2_path()))
        answers = [local_complete(llama, r) for r in requests]
    elif side == 'unshared':
        batcher = LocalBatcher(load_local(str(smollm2_path())), slots, share_prefixes=False)
        answers = [f.result() for f in [batcher.submit(r) for r in requests]]
        facts = dict(fed=batcher.fed, borrowed=batcher.borrowed)
    else:
        model = str(f16_copy(smollm2_path())) if side.startswith('f16') else None
        with tempfile.TemporaryDirectory() as cache_dir:
            llm = LLM('local', model=model, cache_dir=cache_dir, concurrency=slots)
            answers = llm.batch(requests[order], progress=False)[order]
            batcher = local_batcher(llm.model_path, slots)
            facts = dict(fed=batcher.fed, borrowed=batcher.borrowed, failed=llm.usage['failed'])
    wall = time.perf_counter() - start
    return dict(texts=[a.text for a in answers], tokens=sum(a.completion_tokens for a in answers), wall=wall, **facts)


def run_side(side:str, args) -> dict:
    out = subprocess.run([sys.executable, __file__, '--worker', side, '--share', str(args.share), '--slots', str(args.slots)],
                         capture_output=True, text=True)
    if out.returncode: sys.exit(f'bench/generate.py: side {side} failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--share', type=float, default=0.4, help="share of the demo's requests to run on every side (default 0.4)")
    p.add_argument('--slots', type=int, default=LOCAL_SLOTS, help=f'sequences decoded together (default LOCAL_SLOTS={LOCAL_SLOTS})')
    p.add_argument('--worker', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker: return print(json.dumps(worker(args.worker, args.share, args.slots)))
    everything = [as_request(r) for r in demo_requests()]
    n = max(1, round(args.share*len(everything)))
    load = os.getloadavg()
    print(f"# bench/generate.py: the demo's generation requests (seed 0, first round of llm_pool: {len(everything)} requests, "
          f"max_tokens {everything[0]['max_tokens']}, temperature {everything[0]['temperature']}, presence penalty "
          f"{everything[0].get('presence_penalty')}); {n} of {len(everything)} run on each side"
          + (' (a share: --share 1.0 runs all)' if n < len(everything) else '') + '; each side in a fresh process')
    print(f'# model: {smollm2_path().name} (F16 copy: {f16_copy(smollm2_path()).name}); CPU: {cpu_model()}, {os.cpu_count()} cores, '
          f'llama.cpp threads {llama_threads()}, {args.slots} slots; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start')
    print(f'{"side":<38} {"responses":>9} {"compl. tok":>11} {"wall s":>8} {"tokens/s":>9} {"responses/s":>11}  note')
    print('-'*110)
    for side, name in (('single_q4_1', 'Q4_1'), ('single_f16', 'F16')):
        r = run_side(side, args)
        print(f'{f"llama.cpp single stream, {name}":<38} {1:>9} {r["tokens"]:>11} {r["wall"]:>8.1f} {r["tokens"]/r["wall"]:>9.1f} '
              f'{1/r["wall"]:>11.3f}  reference: one prompt, EOS barred; llama.cpp perf counters: {r["own"]:.1f} tokens/s decode')
    runs = {side: run_side(side, args) for side in SIDES}
    speed = {side: r['tokens']/r['wall'] for side, r in runs.items()}
    def same(a, b): return f"{sum(x == y for x, y in zip(runs[a]['texts'], runs[b]['texts']))}/{n}"
    extra = dict(unshared=f"prompt tokens {runs['unshared']['fed']} computed",
                 new=f"prompt tokens {runs['new']['fed']} computed, {runs['new']['borrowed']} copied; {runs['new']['failed']} failed; "
                     f"same texts as without sharing {same('new', 'unshared')}, as serial {same('new', 'serial')}",
                 new_reversed=f"same texts as in order {same('new_reversed', 'new')}",
                 f16=f"{speed['f16']/speed['serial']:.2f}x serial; same texts as Q4_1 batched {same('f16', 'new')}",
                 f16_reversed=f"same texts as in order {same('f16_reversed', 'f16')}")
    for side, (label, note) in SIDES.items():
        r = runs[side]
        print(f"{label:<38} {n:>9} {r['tokens']:>11} {r['wall']:>8.1f} {speed[side]:>9.1f} {n/r['wall']:>11.3f}  "
              f"{note}{'; ' + extra[side] if side in extra else ''}")
    print(f'# load average {os.getloadavg()[0]:.2f} at the end')
    print(f"speedup={speed['new']/speed['serial']:.2f}")


if __name__ == '__main__': main()
