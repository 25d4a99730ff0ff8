"""Benchmark the LLM layer: the paper's loop (sequential openai SDK calls with a 1 s sleep between them)
against `LLM.batch` at its default concurrency, (1) on a loopback endpoint shaped like a remote API (every
answer after a fixed 0.5 s latency) and (2) on llama-cpp-python's real server with the embedded SmolLM2;
then the same batch again from the cache. Run: `python bench/llm.py`. Prints a table, then `speedup=<ratio>`."""
import asyncio, os, sys, tempfile, threading, time

import httpx, openai, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from llm_augment.llm import LLM, LocalServer, free_port

N_REMOTE, N_REMOTE_LOOP = 200, 20 # requests in the batch; the sequential loop is timed on the first 20 only
N_LOCAL, N_LOCAL_LOOP = 20, 8 # the same on the real local server
LATENCY, SLEEP = 0.5, 1.0 # the fake API's latency; the paper's sleep between calls
ANSWER = '\n'.join(f'Response {i}: I would ask the student about their family traditions and how they celebrate.'
                   for i in range(10)) # about 200 tokens, the size of a 10-responses generation call


class FakeAPI:
    "An OpenAI-compatible chat endpoint on loopback that answers every request after `LATENCY` seconds."
    def __init__(self):
        self.requests, self.port = 0, free_port()
        app = Starlette(routes=[Route('/v1/chat/completions', self.complete, methods=['POST'])])
        self.server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=self.port, log_level='warning'))
        threading.Thread(target=self.server.run, daemon=True).start()
        while not self.server.started: time.sleep(0.05)

    async def complete(self, request):
        body = await request.json()
        self.requests += 1
        await asyncio.sleep(LATENCY)
        return JSONResponse({'id': f'chatcmpl-{self.requests}', 'object': 'chat.completion', 'created': int(time.time()),
                             'model': body['model'], 'choices': [{'index': 0, 'finish_reason': 'stop',
                             'message': {'role': 'assistant', 'content': ANSWER}}],
                             'usage': {'prompt_tokens': 150, 'completion_tokens': 200, 'total_tokens': 350}})

    @property
    def url(self): return f'http://127.0.0.1:{self.port}/v1'


def requests_for(n, max_tokens, tag):
    return [{'messages': f'Write one short reply a tutor could give to student {tag}{i}.', 'max_tokens': max_tokens,
             'temperature': 0.7} for i in range(n)]


def paper_loop(base_url, model, requests):
    "The published loop: one call at a time through the openai SDK, sleeping between calls. Seconds per request."
    client = openai.OpenAI(base_url=base_url, api_key='no-key-needed')
    start = time.perf_counter()
    for r in requests:
        client.chat.completions.create(model=model, messages=[{'role': 'user', 'content': r['messages']}],
                                       temperature=r['temperature'], max_tokens=r['max_tokens'])
        time.sleep(SLEEP)
    return (time.perf_counter() - start)/len(requests)


def timed_batch(llm, requests):
    start = time.perf_counter()
    results = llm.batch(requests, progress=False)
    assert all(r.error is None for r in results), [r.error for r in results if r.error][:3]
    return time.perf_counter() - start


def compare(name, base_url, model, n, n_loop, max_tokens, cache_dir, note):
    "One row: the paper's loop (timed on n_loop requests, extrapolated to n) vs our batch on all n."
    requests = requests_for(n, max_tokens, name)
    per_request = paper_loop(base_url, model, requests[:n_loop])
    llm = LLM('openai', model=model, base_url=base_url, cache_dir=cache_dir, timeout=120)
    batch_s = timed_batch(llm, requests)
    row = dict(setting=name, n=n, loop_s=per_request*n, batch_s=batch_s, speedup=per_request*n/batch_s,
               concurrency=llm.concurrency, note=f'loop timed on {n_loop} of {n}, extrapolated; {note}')
    return row, llm, requests


def main():
    rows, cache_dir = [], tempfile.mkdtemp(prefix='llm_bench_cache_')
    api = FakeAPI()
    row, llm, requests = compare('remote-API shape', api.url, 'gpt-4o-mini', N_REMOTE, N_REMOTE_LOOP, 200, cache_dir,
                                 f'fake endpoint, {LATENCY} s latency')
    rows.append(row)
    with LocalServer(threads=2) as server:
        local_row, _, _ = compare('real local server', server.url, 'smollm2', N_LOCAL, N_LOCAL_LOOP, 32, cache_dir,
                                  'llama_cpp.server, 1 parallel slot, 2 threads, max_tokens 32')
        rows.append(local_row)
    before, replays = api.requests, []
    for _ in range(5):
        fresh = LLM('openai', model='gpt-4o-mini', base_url=api.url, cache_dir=cache_dir)
        replays.append(timed_batch(fresh, requests))
    assert all(c.cached for c in fresh.batch(requests, progress=False))
    cache_s = sorted(replays)[len(replays)//2]
    rows.append(dict(setting='cache replay', n=len(requests), loop_s=float('nan'), batch_s=cache_s, speedup=float('nan'),
                     concurrency=fresh.concurrency,
                     note=f'{api.requests - before} upstream requests; {1000*cache_s/len(requests):.3f} ms per request (median of 5)'))
    print(f"{'setting':<18} {'n':>4} {'paper loop s':>12} {'batch s':>8} {'speedup':>8} {'conc':>5}  note")
    for r in rows:
        print(f"{r['setting']:<18} {r['n']:>4} {r['loop_s']:>12.1f} {r['batch_s']:>8.2f} {r['speedup']:>7.1f}x {r['concurrency']:>5}  {r['note']}")
    print(f"(2 cores; load average {os.getloadavg()[0]:.1f} at the end: other work on the machine slows the local rows)")
    print(f"speedup={rows[0]['speedup']:.1f}")


if __name__ == '__main__':
    main()
