"""Benchmark the LLM layer against its peers on ONE loopback OpenAI-compatible endpoint that behaves like a provider
(issue 13): log-normal latency, an RPM and a TPM limit with OpenAI's `x-ratelimit-*` headers on every answer, 429 +
`Retry-After` past them, and 2% 500s. The same N requests go through the paper's loop (1 s sleep, scaled), a plain
sequential loop, bespokelabs-curator (defaults, and tuned to the limits), distilabel's OpenAILLM, and `LLM.batch`;
then llm_augment's row against llama-cpp-python's real server. Time runs 10x fast (latency and sleep /10, limits x10).

Run: `python bench/llm.py [--n 1000] [--peers-python PATH]` with the project venv. The peers run in subprocesses of
another venv (default: env LLM_AUGMENT_PEERS_PYTHON), made with
`python3 -m venv /work/peers && /work/peers/bin/pip install -r bench/requirements-peers.txt`.
The fake endpoint runs in a process of its own (`python bench/llm.py --fake PORT`), so no client shares its GIL.
Prints a table, then `speedup=<ratio>` (llm_augment's throughput / the best peer's)."""
import argparse, asyncio, json, math, os, platform, random, subprocess, sys, tempfile, textwrap, threading, time
from collections import Counter

SCALE = 10 # time runs this many times faster than a real provider's; limits are this many times higher
MEDIAN_LATENCY = 2.0/SCALE # seconds for a 200-token answer (median); scales with the answer's tokens
SIGMA = float(os.environ.get('BENCH_SIGMA', 0.5)) # log-normal spread of the latency (env BENCH_SIGMA, for a sensitivity run only)
RPM, TPM = 500*SCALE, 200_000*SCALE # the account's limits (per real minute, as the headers state them)
WINDOW = 1.0 # seconds: the limits are enforced as a token bucket over this window (OpenAI quantises its per-minute limits)
ERROR_RATE = 0.02 # share of admitted requests answered with a 500
SLEEP = 1.0/SCALE # the paper's sleep between calls, scaled like the latency
MAX_TOKENS, MODEL = 256, 'gpt-4o-mini'


def approx_tokens(text): return max(1, len(text)//4)

def fmt_duration(s):
    "OpenAI's reset format: '20ms', '1s', '1.5s', '6m0s'."
    if s < 1: return f'{max(0, int(s*1000))}ms'
    m, s = divmod(s, 60)
    return f'{int(m)}m{s:.0f}s' if m else f'{s:.3g}s'


# ----------------------------------------------------------------------------------------------------- the fake
def fake_main(port, seed=0):
    "The fake provider: run in its own process."
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    rng = random.Random(seed)
    cap = dict(requests=RPM*WINDOW/60, tokens=TPM*WINDOW/60) # bucket sizes; they refill at limit/60 per second
    limit = dict(requests=RPM, tokens=TPM)
    state = {}

    def reset():
        state.update(level=dict(cap), stamp=time.monotonic(), received=0, admitted=0, r429=0, r500=0, r400=0,
                     served=Counter(), seen=Counter(), tokens=0, first=None, last=None)
    reset()

    def refill(now):
        for k in cap: state['level'][k] = min(cap[k], state['level'][k] + (now - state['stamp'])*limit[k]/60)
        state['stamp'] = now

    def headers(now):
        h = {}
        for k in cap:
            level = state['level'][k]
            h[f'x-ratelimit-limit-{k}'] = str(limit[k])
            h[f'x-ratelimit-remaining-{k}'] = str(max(0, int(level/cap[k]*limit[k]))) # the bucket's fill, in per-minute units
            h[f'x-ratelimit-reset-{k}'] = fmt_duration((cap[k] - level)*60/limit[k])
        return h

    async def complete(request):
        body = await request.json()
        now = time.monotonic()
        refill(now)
        messages = body.get('messages') or []
        prompt = ''.join(str(m.get('content', '')) for m in messages)
        need = approx_tokens(prompt) + int(body.get('max_tokens') or body.get('max_completion_tokens') or 4096)
        state['received'] += 1; state['seen'][prompt] += 1
        if state['first'] is None: state['first'] = now
        lv = state['level']
        if lv['requests'] < 1 or lv['tokens'] < min(need, cap['tokens']):
            state['r429'] += 1
            kind = 'requests' if lv['requests'] < 1 else 'tokens'
            wait = (1 - lv['requests'])*60/RPM if kind == 'requests' else (min(need, cap['tokens']) - lv['tokens'])*60/TPM
            h = headers(now) | {'retry-after': str(max(1, math.ceil(wait))), 'retry-after-ms': str(max(1, int(wait*1000)))}
            return JSONResponse({'error': {'message': f'Rate limit reached for {kind} on {body.get("model")}. Please try again in {fmt_duration(wait)}.',
                                           'type': kind, 'param': None, 'code': 'rate_limit_exceeded'}}, status_code=429, headers=h)
        lv['requests'] -= 1; lv['tokens'] -= min(need, cap['tokens'])
        state['admitted'] += 1
        h = headers(now)
        if not messages: # curator's probe for the limits: OpenAI answers 400 (with the headers)
            state['r400'] += 1
            return JSONResponse({'error': {'message': "[] is too short - 'messages'", 'type': 'invalid_request_error',
                                           'param': 'messages', 'code': None}}, status_code=400, headers=h)
        n_out = random.Random(prompt).randint(150, 250) # the answer's length depends on the prompt only
        await asyncio.sleep(MEDIAN_LATENCY*n_out/200*math.exp(rng.gauss(0, SIGMA)))
        state['last'] = time.monotonic()
        if rng.random() < ERROR_RATE:
            state['r500'] += 1
            return JSONResponse({'error': {'message': 'The server had an error while processing your request.', 'type': 'server_error',
                                           'param': None, 'code': None}}, status_code=500, headers=h)
        state['served'][prompt] += 1; state['tokens'] += need
        n_in = approx_tokens(prompt)
        return JSONResponse({'id': f'chatcmpl-{state["admitted"]}', 'object': 'chat.completion', 'created': int(time.time()),
                             'model': body.get('model'), 'choices': [{'index': 0, 'finish_reason': 'stop', 'logprobs': None,
                             'message': {'role': 'assistant', 'content': ' '.join(['word']*n_out)}}],
                             'usage': {'prompt_tokens': n_in, 'completion_tokens': n_out, 'total_tokens': n_in + n_out}}, headers=h)

    async def models(request):
        return JSONResponse({'object': 'list', 'data': [{'id': MODEL, 'object': 'model', 'created': 0, 'owned_by': 'bench'}]})

    async def bench_reset(request):
        reset(); return JSONResponse({'ok': True})

    async def stats(request):
        s = state
        return JSONResponse(dict(received=s['received'], admitted=s['admitted'], r429=s['r429'], r500=s['r500'], r400=s['r400'],
                                 served=sum(s['served'].values()), distinct_served=len(s['served']),
                                 duplicates=sum(v - 1 for v in s['served'].values() if v > 1),
                                 distinct_seen=len(s['seen']), tokens=s['tokens']))

    app = Starlette(routes=[Route('/v1/chat/completions', complete, methods=['POST']), Route('/v1/models', models),
                            Route('/_bench/reset', bench_reset, methods=['POST']), Route('/_bench/stats', stats)])
    uvicorn.run(app, host='127.0.0.1', port=port, log_level='warning', access_log=False)


class Fake:
    "The fake provider's process, and its per-run counters."
    def __init__(self):
        import httpx
        from llm_augment.llm import free_port
        self.httpx, self.port = httpx, free_port()
        self.process = subprocess.Popen([sys.executable, __file__, '--fake', str(self.port)])
        while True:
            try:
                if httpx.get(f'{self.url}/models', timeout=1).status_code == 200: break
            except httpx.HTTPError: time.sleep(0.1)

    @property
    def url(self): return f'http://127.0.0.1:{self.port}/v1'
    def reset(self):
        time.sleep(WINDOW) # the buckets refill as they would between runs
        self.httpx.post(f'http://127.0.0.1:{self.port}/_bench/reset')
    def stats(self): return self.httpx.get(f'http://127.0.0.1:{self.port}/_bench/stats').json()
    def stop(self): self.process.terminate(); self.process.wait(10)


def prompts_for(n, tag='s'): return [f'Write one short reply a tutor could give to student {tag}{i}.' for i in range(n)]


# ----------------------------------------------------------------------------------------------------- the rows
def sequential_loop(url, prompts, sleep, max_tokens=MAX_TOKENS, model=MODEL):
    "The paper's loop (sleep > 0) or a plain one: one openai SDK call at a time (the SDK's default 2 retries)."
    import openai
    client, failed = openai.OpenAI(base_url=url, api_key='sk-bench-dummy'), 0
    start = time.perf_counter()
    for p in prompts:
        try: client.chat.completions.create(model=model, messages=[{'role': 'user', 'content': p}], max_tokens=max_tokens, temperature=0.7)
        except openai.APIError: failed += 1
        if sleep: time.sleep(sleep)
    return dict(wall=time.perf_counter() - start, failed=failed)


def llm_augment_run(url, prompts, cache_dir):
    from llm_augment.llm import LLM
    os.environ['BENCH_DUMMY_KEY'] = 'sk-bench-dummy'
    llm = LLM('openai', model=MODEL, base_url=url, api_key_env='BENCH_DUMMY_KEY', rpm=RPM, tpm=TPM, cache_dir=cache_dir)
    requests = [dict(messages=p, max_tokens=MAX_TOKENS, temperature=0.7) for p in prompts]
    start = time.perf_counter()
    results = llm.batch(requests, progress=False)
    wall = time.perf_counter() - start
    usage, limit = dict(llm.usage), llm._limit.limit
    replays = []
    for _ in range(3):
        fresh = LLM('openai', model=MODEL, base_url=url, api_key_env='BENCH_DUMMY_KEY', rpm=RPM, tpm=TPM, cache_dir=cache_dir)
        t = time.perf_counter(); again = fresh.batch(requests, progress=False); replays.append(time.perf_counter() - t)
    assert all(c.cached for c in again)
    return dict(wall=wall, failed=sum(r.error is not None for r in results), usage=usage, final_limit=limit,
                cache_ms=1000*sorted(replays)[1]/len(prompts))


CURATOR = r'''
import json, os, sys, tempfile, time, logging
args = json.loads(sys.argv[1])
os.environ.setdefault('CURATOR_CACHE_DIR', tempfile.mkdtemp(prefix='curator_bench_'))
os.environ['OPENAI_API_KEY'] = 'sk-bench-dummy'
os.environ['TELEMETRY_ENABLED'] = 'false'; os.environ['CURATOR_DISABLE_RICH_DISPLAY'] = '1'
os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] = 'True'
import importlib.util, pathlib # no internet: tiktoken's cl100k_base from the copy litellm ships
os.environ.setdefault('TIKTOKEN_CACHE_DIR', str(pathlib.Path(importlib.util.find_spec('litellm').origin).parent/'litellm_core_utils'/'tokenizers'))
from bespokelabs import curator
backend_params = dict(base_url=args['url'], api_key='sk-bench-dummy', require_all_responses=False) | args['extra']
llm = curator.LLM(model_name=args['model'], backend='openai', backend_params=backend_params,
                  generation_params=dict(max_tokens=args['max_tokens'], temperature=0.7))
prompts = args['prompts']
def run():
    t = time.perf_counter(); out = llm(prompts); wall = time.perf_counter() - t
    ds = out.dataset if hasattr(out, 'dataset') else out
    answers = [r for r in ds['response'] if r]
    return wall, len(prompts) - len(answers)
wall, failed = run()
print('BENCH', json.dumps(dict(wall=wall, failed=failed)), flush=True)
if args['replay']:
    cwall, cfailed = run()
    print('BENCH', json.dumps(dict(wall=wall, failed=failed, cache_ms=1000*cwall/len(prompts), cache_failed=cfailed)), flush=True)
'''

DISTILABEL = r'''
import json, os, sys, time
args = json.loads(sys.argv[1])
try: from distilabel.models import OpenAILLM
except ImportError: from distilabel.llms import OpenAILLM
llm = OpenAILLM(model=args['model'], base_url=args['url'], api_key='sk-bench-dummy')
llm.load()
inputs = [[{'role': 'user', 'content': p}] for p in args['prompts']]
t = time.perf_counter()
try:
    out = llm.generate(inputs=inputs, num_generations=1, max_new_tokens=args['max_tokens'], temperature=0.7)
    failed = sum(1 for o in out if not o['generations'] or o['generations'][0] is None); err = None
except Exception as e:
    failed, err = len(inputs), f'{type(e).__name__}: {str(e)[:150]}'
wall = time.perf_counter() - t
print('BENCH', json.dumps(dict(wall=wall, failed=failed, error=err, max_retries=llm.max_retries)), flush=True)
'''


def peer_run(python, script, args, timeout=900):
    "Run a peer's script in its venv; its last BENCH line, or the reason it gave none."
    try:
        p = subprocess.run([python, '-c', script, json.dumps(args)], capture_output=True, text=True, timeout=timeout,
                           env=os.environ | {'PYTHONWARNINGS': 'ignore'})
    except subprocess.TimeoutExpired: return dict(error=f'did not finish within {timeout} s')
    lines = [l for l in p.stdout.splitlines() if l.startswith('BENCH ')]
    if not lines: return dict(error=f'exit {p.returncode}: ' + ((p.stderr or p.stdout).strip().splitlines() or ['no output'])[-1][:200])
    return json.loads(lines[-1][6:])


def peer_version(python, dist):
    try: return subprocess.run([python, '-c', f'import importlib.metadata as m; print(m.version({dist!r}))'], capture_output=True,
                               text=True, timeout=60).stdout.strip() or '?'
    except Exception: return '?'


# ----------------------------------------------------------------------------------------------------- the table
def row(name, n, res, stats, share_of=1.0, note='', cache='n/a'):
    "A row from a client's result and the fake's counters for its run; `share_of` < 1: timed on a share, extrapolated."
    if 'error' in res and res.get('wall') is None:
        return dict(name=name, wall=None, note=f"did not run: {res['error']}")
    wall = res['wall']/share_of
    served = stats['distinct_served']
    rpm_share = 60*n/wall/RPM if share_of < 1 else 60*served/res['wall']/RPM
    tpm_share = 60*stats['tokens']/res['wall']/TPM
    return dict(name=name, wall=wall, extrapolated=share_of < 1, ceiling=max(rpm_share, tpm_share), binds='RPM' if rpm_share >= tpm_share else 'TPM',
                r429=stats['r429'], retries=stats['received'] - stats['distinct_seen'], failed=res.get('failed', 0),
                dup=stats['duplicates'], cache=cache, throughput=served/res['wall'], note=note)


def print_table(rows, n, cpu, peers_note):
    print(f'# bench/llm.py: {n} generation requests ({MODEL}, max_tokens {MAX_TOKENS}, answers 150-250 tokens) on one loopback fake provider')
    print(f'# TIME SCALED 1/{SCALE}: latency log-normal, median {MEDIAN_LATENCY:.2f} s per 200 answer tokens (sigma {SIGMA}) = 2 s real;'
          f' limits {RPM} RPM / {TPM:,} TPM = {RPM//SCALE} RPM / {TPM//SCALE:,} TPM real, enforced as a token bucket over {WINDOW:g} s'
          f' (headers: limit, remaining, reset on every answer; 429 + Retry-After past them); {ERROR_RATE:.0%} of admitted requests get a 500;'
          f' the paper\'s 1 s sleep is {SLEEP:g} s')
    print(f'# CPU: {cpu}, {os.cpu_count()} cores (shared with other work: load average {os.getloadavg()[0]:.1f} at the start). {peers_note}')
    print('# ceiling = requests served per minute / RPM, or tokens admitted-and-served / TPM, whichever binds; 429s, retries (requests'
          ' received beyond one per prompt, probes included) and duplicates (prompts answered 200 more than once) are counted by the fake.')
    print('# cached = per-request time of a second run of the same requests from the client\'s cache; * = timed on a share, extrapolated to all.')
    head = f"{'client':<34} {'wall s':>8} {'ceiling':>8} {'429s':>6} {'retries':>7} {'failed':>6} {'dup':>4} {'cached ms/req':>13}  note"
    print(head); print('-'*len(head))
    for r in rows:
        if r['wall'] is None: print(f"{r['name']:<34} {'-':>8} {'-':>8} {'-':>6} {'-':>7} {'-':>6} {'-':>4} {'-':>13}  {r['note']}"); continue
        wall = f"{r['wall']:.1f}" + ('*' if r['extrapolated'] else '')
        print(f"{r['name']:<34} {wall:>8} {r['ceiling']:>7.0%}{r['binds'][0]} {r['r429']:>6} {r['retries']:>7} {r['failed']:>6} {r['dup']:>4} {r['cache']:>13}  {r['note']}")


def cpu_model():
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or '?'


def local_server_row(n=12):
    "llm_augment against llama-cpp-python's real server with the embedded SmolLM2 (1 slot): what the pacing does on one."
    from llm_augment.llm import LLM, LocalServer
    with LocalServer(threads=2) as server, tempfile.TemporaryDirectory() as cache:
        requests = [dict(messages=p, max_tokens=32, temperature=0.7) for p in prompts_for(n, 'local')]
        sequential_loop(server.url, prompts_for(1, 'warm'), 0, 32, 'smollm2') # warm the server up, so neither row pays its first prompt
        seq = sequential_loop(server.url, prompts_for(4, 'seq'), 0, 32, 'smollm2') # baseline: one at a time
        llm = LLM('openai', model='smollm2', base_url=server.url, cache_dir=cache, timeout=120)
        t = time.perf_counter(); res = llm.batch(requests, progress=False); wall = time.perf_counter() - t
        u = llm.usage
        return (f"llama_cpp.server (real, 1 parallel slot, 2 threads, SmolLM2, max_tokens 32): llm_augment {n} requests in {wall:.1f} s"
                f" ({wall/n:.2f} s/req; plain sequential {seq['wall']/4:.2f} s/req on 4), {sum(r.error is not None for r in res)} failed,"
                f" {u['retries']} retries, limit ended at {llm._limit.limit} in flight (of {llm._limit.ceiling})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=1000)
    ap.add_argument('--loop-share', type=int, default=60, help='requests the two sequential loops are timed on')
    ap.add_argument('--peers-python', default=os.environ.get('LLM_AUGMENT_PEERS_PYTHON'))
    ap.add_argument('--no-local', action='store_true', help='skip the llama_cpp.server row')
    a = ap.parse_args()
    n, prompts, cpu, rows = a.n, prompts_for(a.n), cpu_model(), []
    fake = Fake()
    try:
        share = min(a.loop_share, n)
        for name, sleep in (("paper's loop (1 s sleep, scaled)", SLEEP), ('plain sequential loop', 0)):
            fake.reset(); res = sequential_loop(fake.url, prompts[:share], sleep)
            rows.append(row(name, n, res, fake.stats(), share/n, note=f'timed on {share} of {n}, extrapolated'))
        peers_note = 'Peers: none (pass --peers-python or set LLM_AUGMENT_PEERS_PYTHON to a venv with bespokelabs-curator and distilabel).'
        if a.peers_python:
            cv, dv = peer_version(a.peers_python, 'bespokelabs-curator'), peer_version(a.peers_python, 'distilabel')
            peers_note = f'Peers: bespokelabs-curator {cv}, distilabel {dv} (python {a.peers_python}).'
            for name, extra, note in (
                    (f'curator {cv} defaults', {}, 'limits read from the headers by its probe; its default 10 s pause after a 429'),
                    (f'curator {cv} tuned', dict(max_requests_per_minute=RPM, max_tokens_per_minute=TPM, seconds_to_pause_on_rate_limit=1),
                     f'max_requests_per_minute={RPM}, max_tokens_per_minute={TPM}, seconds_to_pause_on_rate_limit=1 (its 10 s, scaled)')):
                fake.reset()
                res = peer_run(a.peers_python, CURATOR, dict(url=fake.url, model=MODEL, max_tokens=MAX_TOKENS, prompts=prompts, extra=extra,
                                                             replay=not extra))
                cache = f"{res['cache_ms']:.2f}" if 'cache_ms' in res else 'n/a'
                rows.append(row(name, n, res, fake.stats(), note=note + ('; cached: its own run cache, 2nd call' if 'cache_ms' in res else ''), cache=cache))
            fake.reset()
            res = peer_run(a.peers_python, DISTILABEL, dict(url=fake.url, model=MODEL, max_tokens=MAX_TOKENS, prompts=prompts))
            rows.append(row(f'distilabel {dv} OpenAILLM.generate', n, res, fake.stats(),
                            note=f"all requests at once (asyncio.gather), openai SDK retries (max_retries={res.get('max_retries')})"
                                 + (f"; raised {res['error']}" if res.get('error') else '') + '; cache only in Pipeline runs, not used'))
        fake.reset()
        with tempfile.TemporaryDirectory() as cache_dir:
            res = llm_augment_run(fake.url, prompts, cache_dir)
        u = res['usage']
        rows.append(row('llm_augment LLM.batch', n, res, fake.stats(), cache=f"{res['cache_ms']:.3f}",
                        note=f"rpm={RPM}, tpm={TPM}; usage: requests {u['requests']}, cached {u['cached']}, failed {u['failed']}, sent {u['sent']},"
                             f" attempts {u['attempts']}, retries {u['retries']}, rate_limited {u['rate_limited']}, work_factor {u['work_factor']};"
                             f" limit ended at {res['final_limit']} in flight"))
    finally:
        fake.stop()
    local = None
    if not a.no_local:
        try: local = local_server_row()
        except Exception as e: local = f'llama_cpp.server row did not run: {type(e).__name__}: {e}'
    print_table(rows, n, cpu, peers_note)
    if local: print(local)
    ours = rows[-1]
    peers = [r for r in rows if r['wall'] is not None and r['name'].startswith(('curator', 'distilabel')) and r['failed'] < n]
    if ours['wall'] is not None:
        best = max(peers, key=lambda r: r['throughput'], default=None)
        fewest = min((r['r429'] for r in peers), default=math.inf)
        print(f"targets: ceiling >= 90%: {'met' if ours['ceiling'] >= 0.9 else 'NOT met'} ({ours['ceiling']:.0%});"
              f" >= best peer's throughput: {('met' if best and ours['throughput'] >= best['throughput'] else 'NOT met') if best else 'no peer ran'};"
              f" fewest 429s: {'met' if ours['r429'] <= fewest else 'NOT met'} ({ours['r429']} vs {fewest if peers else '-'});"
              f" zero failed/duplicated: {'met' if ours['failed'] == 0 and ours['dup'] == 0 else 'NOT met'};"
              f" cached replay < 2 ms/req: {'met' if res['cache_ms'] < 2 else 'NOT met'} ({res['cache_ms']:.3f} ms)")
        if best: print(f"speedup={ours['throughput']/best['throughput']:.2f} (vs {best['name']})")
        else: print('speedup=n/a (no peer ran)')


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--fake': fake_main(int(sys.argv[2]))
    else: main()
