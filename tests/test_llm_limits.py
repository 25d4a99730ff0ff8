"""Pacing against fake OpenAI-compatible servers of our own on loopback: a server with one slot that queues
(and computes what it queued even after the client gave up), and a rate-limited one with `x-ratelimit-*`
headers and 429 storms. They count the work they start and stamp every request's arrival."""
import asyncio, http.server, json, math, random, threading, time
from collections import Counter

import httpx, openai, pytest

from llm_augment.llm import LLM, AdaptiveLimit, Completion, as_request, little_limit, overloaded
from loopback import JsonHandler

pytestmark = pytest.mark.timeout(120)
KEY_ENV = 'LLM_AUGMENT_LIMITS_TEST_KEY'


class FakeServer(http.server.ThreadingHTTPServer):
    "A chat-completions endpoint whose behaviour `answer(handler, prompt, arrived)` decides; stamps arrivals."
    daemon_threads = True

    def __init__(self):
        super().__init__(('127.0.0.1', 0), Handler)
        self.lock, self.arrivals, self.statuses, self.auth = threading.Lock(), [], Counter(), set()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self): return f'http://127.0.0.1:{self.server_port}/v1'

    def handle_error(self, request, client_address): pass # a client that timed out closed its end: expected here

    def answer(self, handler, prompt, arrived): raise NotImplementedError


def completion(prompt):
    return json.dumps({'id': 'chatcmpl-1', 'object': 'chat.completion', 'created': 0, 'model': 'fake',
                       'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': f'answer to {prompt}'},
                                    'finish_reason': 'stop'}],
                       'usage': {'prompt_tokens': 10, 'completion_tokens': 3, 'total_tokens': 13}}).encode()


class Handler(JsonHandler):
    def reply(self, status, body, headers=()):
        super().reply(status, body, headers)
        with self.server.lock: self.server.statuses[status] += 1

    def do_POST(self):
        s = self.server
        prompt = json.loads(self.rfile.read(int(self.headers['content-length'])))['messages'][-1]['content']
        with s.lock:
            s.arrivals.append(arrived := time.monotonic())
            s.auth.add(self.headers.get('authorization'))
        s.answer(self, prompt, arrived)


class OneSlot(FakeServer):
    "Serves one request at a time, `service` seconds each, queueing the rest; a share of arrivals faults at once."
    def __init__(self, service=0.3, fault_rate=0.25, hang=3.0, seed=4):
        super().__init__()
        self.slot, self.service, self.fault_rate, self.hang, self.rng = threading.Lock(), service, fault_rate, hang, random.Random(seed)
        self.work, self.faults = 0, Counter() # computations started; faults answered

    def answer(self, handler, prompt, arrived):
        with self.lock: kind = self.rng.choice(('429', '500', 'hang')) if self.rng.random() < self.fault_rate else None
        if kind:
            with self.lock: self.faults[kind] += 1
        if kind == '429': return handler.reply(429, b'{"error": {"message": "slow down"}}', [('retry-after', '0.3')])
        if kind == '500': return handler.reply(500, b'{"error": {"message": "boom"}}')
        if kind == 'hang': return time.sleep(self.hang) # then close without an answer: the client has timed out
        with self.slot: # like llama.cpp with one slot: the queued request is computed even if its client left
            with self.lock: self.work += 1
            time.sleep(self.service)
        handler.reply(200, completion(prompt))


class RateLimited(FakeServer):
    "At most `per_window` requests per `window` seconds (429 past it), with OpenAI's `x-ratelimit-*` headers."
    def __init__(self, per_window=8, window=1.0, latency=0.05, tokens=100_000, storm_at=None, storm=1.5):
        super().__init__()
        self.per_window, self.window, self.latency, self.tokens = per_window, window, latency, tokens
        self.start, self.storm_at, self.storm, self.storm_start = time.monotonic(), storm_at, storm, None
        self.used, self.used_tokens, self.served = Counter(), Counter(), 0

    def answer(self, handler, prompt, arrived):
        with self.lock:
            now = arrived
            w = int((now - self.start)/self.window)
            reset = self.start + (w + 1)*self.window - now
            if self.storm_at is not None and self.storm_start is None and self.served >= self.storm_at: self.storm_start = now
            storming = self.storm_start is not None and now < self.storm_start + self.storm
            allowed = not storming and self.used[w] < self.per_window
            if allowed: self.used[w] += 1; self.used_tokens[w] += 13; self.served += 1
            headers = [('x-ratelimit-limit-requests', str(self.per_window)),
                       ('x-ratelimit-remaining-requests', str(self.per_window - self.used[w])),
                       ('x-ratelimit-reset-requests', f'{round(reset*1000)}ms'),
                       ('x-ratelimit-limit-tokens', str(self.tokens)),
                       ('x-ratelimit-remaining-tokens', str(self.tokens - self.used_tokens[w])),
                       ('x-ratelimit-reset-tokens', f'{reset:.3f}s')]
        if storming:
            left = self.storm_start + self.storm - now
            return handler.reply(429, b'{"error": {"message": "storm"}}', [('retry-after', f'{left:.3f}')])
        if not allowed: return handler.reply(429, b'{"error": {"message": "rate limit"}}', headers)
        time.sleep(self.latency)
        handler.reply(200, completion(prompt), headers)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, 'sk-dummy-limits')
    return 'sk-dummy-limits'


def calls(n, tag): return [{'messages': f'{tag} {i}', 'max_tokens': 8} for i in range(n)]


def test_one_slot_server_is_not_flooded(tmp_path, key):
    server = OneSlot()
    llm = LLM('openai', model='fake', base_url=server.url, api_key_env=KEY_ENV, cache_dir=tmp_path, timeout=2, backoff=0.1)
    results = llm.batch(calls(24, 'slot'), progress=False)
    assert [r.error for r in results] == [None]*24 and all(r.text == f'answer to slot {i}' for i, r in enumerate(results))
    assert set(server.faults) == {'429', '500', 'hang'} # every kind of fault was met ...
    assert server.work < 1.5*24 # ... and the server computed little more than once per call
    u = llm.usage
    assert u['sent'] == 24 and u['attempts'] == len(server.arrivals) and u['retries'] == u['attempts'] - 24
    assert u['rate_limited'] == server.faults['429'] and u['failed'] == 0 and llm.failure_report() is None
    assert u['work_factor'] == round(u['attempts']/24, 3)
    assert server.auth == {f'Bearer {key}'}
    for f in tmp_path.iterdir(): assert key.encode() not in f.read_bytes()
    print(f'\n24 calls: {server.work} computations, {u["attempts"]} attempts, faults {dict(server.faults)}, limit {llm._limit}')


def test_one_slot_server_failures_are_loud(tmp_path, key):
    "A server that only hangs: every call fails, and says how many, why, and that a rerun retries only those."
    server = OneSlot(fault_rate=1.0, hang=1.0)
    server.rng = type('Hang', (), {'random': lambda self: 0.0, 'choice': lambda self, kinds: 'hang'})()
    llm = LLM('openai', model='fake', base_url=server.url, api_key_env=KEY_ENV, cache_dir=tmp_path, timeout=0.5,
              backoff=0.05, max_attempts=2)
    results = llm.batch(calls(3, 'hang'), progress=False)
    assert all(r.text is None and 'Timeout' in r.error for r in results)
    assert len(llm.failures) == 3 and llm.usage['failed'] == 3 and llm._limit.limit == 1
    report = llm.failure_report()
    assert report.startswith('3 of 3 LLM calls failed, most often (3 of 3) with APITimeoutError') and 'retry only those' in report
    assert '3 failed' in llm.usage_line()


def test_rate_limited_burst_stays_under_the_limit(tmp_path, key):
    server = RateLimited(per_window=8, window=1.0)
    llm = LLM('openai', model='fake', base_url=server.url, api_key_env=KEY_ENV, cache_dir=tmp_path, timeout=5, backoff=0.1)
    results = llm.batch(calls(32, 'burst'), progress=False)
    assert [r.error for r in results] == [None]*32
    assert server.statuses[429] <= 3 and llm.usage['rate_limited'] == server.statuses[429]
    assert server.statuses[200] == 32 and max(server.used.values()) <= 8
    print(f'\n32 calls at 8 per second: {server.statuses[429]} 429s, per window {sorted(server.used.items())}')


def test_user_rpm_paces_a_server_without_headers(tmp_path, key):
    "A user's `rpm` is a bucket of its own: a full bucket at once, then one each period/rpm."
    server = OneSlot(service=0.01, fault_rate=0.0)
    llm = LLM('openai', model='fake', base_url=server.url, api_key_env=KEY_ENV, cache_dir=tmp_path, timeout=5, rpm=3)
    llm._own['requests'].period = 1.5 # 3 per 1.5 s, so the test is short: 3 at once, then one each 0.5 s
    results = llm.batch(calls(6, 'rpm'), progress=False)
    assert [r.error for r in results] == [None]*6
    t = sorted(server.arrivals)
    assert t[3] - t[0] >= 0.4 and t[5] - t[3] >= 0.8 # the 4th waited for the bucket, and the 6th for two more refills


def test_a_429_storm_pauses_every_request(tmp_path, key):
    server = RateLimited(per_window=1000, window=1.0, latency=0.05, storm_at=10, storm=1.5)
    llm = LLM('openai', model='fake', base_url=server.url, api_key_env=KEY_ENV, cache_dir=tmp_path, timeout=5,
              backoff=0.1, concurrency=8)
    results = llm.batch(calls(30, 'storm'), progress=False)
    assert [r.error for r in results] == [None]*30
    start, end = server.storm_start, server.storm_start + server.storm
    during = [t for t in server.arrivals if start <= t < end]
    assert 1 <= server.statuses[429] == len(during) <= 8 # those in flight when it began, no more than the ceiling ...
    assert not [t for t in during if t > start + 0.25] # ... and nothing sent once the client knew of the cool-down
    assert len([t for t in server.arrivals if t >= end]) >= 30 - 10 # the rest came after it
    assert llm.usage['rate_limited'] == server.statuses[429]


def status_error(code):
    return openai.APIStatusError(f'status {code}', response=httpx.Response(code, request=httpx.Request('POST', 'http://x')), body=None)


def test_latency_is_compared_with_the_median_not_the_best():
    "One fast outlier among answers of about a second: the old rule (1.5x the best) cut on every answer after it."
    limit = AdaptiveLimit(ceiling=32, start=8, timeout=60)
    for t in range(10): limit.record(sent=t, latency=1.0 + 0.05*(t % 2), now=t)
    limit.record(sent=10, latency=0.1, now=10) # the outlier
    for t in range(11, 16): limit.record(sent=t, latency=1.0 + 0.05*(t % 2), now=t)
    assert limit.limit == 9 and limit.cut_at == -math.inf # ordinary answers after it: grown a round (8 answers), never cut
    limit.record(sent=16, latency=2.5, now=16) # a real slow-down (2.5x the median) still halves it
    assert limit.limit == 4 and limit.cut_at == 16


@pytest.mark.parametrize('fault, cut', [('500', False), ('502', False), ('429', True), ('503', True), ('timeout', True)])
def test_only_timeouts_429_and_503_cut_the_limit(tmp_path, key, fault, cut):
    "One request whose first attempt fails, then is answered: a plain 500 is retried without slowing down; an overload halves the limit."
    llm = LLM('openai', model='fake', base_url='http://127.0.0.1:9/v1', api_key_env=KEY_ENV, cache_dir=tmp_path, concurrency=8, backoff=0.01)
    llm._limit.limit = 4
    tries = []
    async def call(request):
        tries.append(time.monotonic())
        if len(tries) == 1:
            if fault == 'timeout': raise openai.APITimeoutError(httpx.Request('POST', 'http://x'))
            raise status_error(int(fault))
        return Completion('ok', prompt_tokens=3, completion_tokens=2), {}
    request = as_request({'messages': 'one', 'max_tokens': 4})
    done = asyncio.run(llm._attempts(call, request))
    assert done.error is None and done.attempts == 2 and len(tries) == 2 # retried either way ...
    assert llm._limit.limit == (2 if cut else 4) # ... but only an overload halved the limit
    assert overloaded(status_error(int(fault)) if fault != 'timeout' else openai.APITimeoutError(httpx.Request('POST', 'http://x'))) == cut


class Parallel(FakeServer):
    "Answers every request after `latency` seconds, however many are in flight (a provider's fleet)."
    def __init__(self, latency=0.2):
        super().__init__()
        self.latency = latency

    def answer(self, handler, prompt, arrived):
        time.sleep(self.latency)
        handler.reply(200, completion(prompt))


def test_a_known_rate_sizes_the_limit_by_littles_law(tmp_path, key):
    "At 100 requests/s and 0.2 s an answer, reaching the rate takes 20 in flight (25 with the headroom); without a rate the limit only creeps up."
    server = Parallel(latency=0.2)
    paced = LLM('openai', model='fake', base_url=server.url, api_key_env=KEY_ENV, cache_dir=tmp_path/'paced', timeout=5, rpm=6000)
    assert [r.error for r in paced.batch(calls(40, 'rate'), progress=False)] == [None]*40
    assert paced._limit.rate == 100 and paced._limit.limit >= little_limit(100, 0.2) == 25
    blind = LLM('openai', model='fake', base_url=server.url, api_key_env=KEY_ENV, cache_dir=tmp_path/'blind', timeout=5)
    assert [r.error for r in blind.batch(calls(40, 'blind'), progress=False)] == [None]*40
    assert blind._limit.rate is None and blind._limit.limit <= 10 # from 2, one more per round of answers: at most 10 after 40


class TokenBucket(FakeServer):
    """OpenAI's per-minute limit enforced as a token bucket that holds only `window` seconds of it (a quantised limit):
    `rpm` requests a minute, refilled continuously, at most rpm*window/60 at once. Like the bench's fake provider, its
    headers give what is left as a share of the per-minute limit and the time until the bucket is full; 429 +
    `retry-after-ms` past it."""
    def __init__(self, rpm=3000, window=0.4, latency=0.1, sigma=0.5, seed=0):
        super().__init__()
        self.rpm, self.depth, self.latency, self.sigma, self.rng = rpm, rpm*window/60, latency, sigma, random.Random(seed)
        self.level, self.stamp, self.served = self.depth, time.monotonic(), 0

    def answer(self, handler, prompt, arrived):
        with self.lock:
            self.level, self.stamp = min(self.depth, self.level + (arrived - self.stamp)*self.rpm/60), arrived
            admitted = self.level >= 1
            if admitted: self.level -= 1
            headers = [('x-ratelimit-limit-requests', str(self.rpm)),
                       ('x-ratelimit-remaining-requests', str(int(self.level/self.depth*self.rpm))),
                       ('x-ratelimit-reset-requests', f'{int((self.depth - self.level)*60/self.rpm*1000)}ms')]
            pause = self.latency*math.exp(self.rng.gauss(0, self.sigma))
        if not admitted:
            wait = (1 - self.level)*60/self.rpm
            return handler.reply(429, b'{"error": {"message": "rate limit"}}', headers + [('retry-after-ms', str(max(1, int(wait*1000))))])
        time.sleep(pause)
        with self.lock: self.served += 1
        handler.reply(200, completion(prompt), headers)


def test_a_quantised_bucket_is_paced_by_its_headers_not_hit(tmp_path, key):
    """3000 RPM held as 0.4 s of it (20 requests at once), what is left given as a share of the per-minute limit (one
    request is 150 of its units): the client reads the bucket's depth from the headers and sends at the rate it refills.
    The old client read `remaining` as requests, so its in-flight limit alone paced it, and it hit the bucket 8 to 35
    times in each of six runs of these calls. Now: at most 3 429s (none in six runs), and at least 80% of what the
    bucket granted over the run is used (a throughput floor counted in requests, not timed)."""
    server = TokenBucket(rpm=3000, window=0.4, latency=0.1)
    llm = LLM('openai', model='fake', base_url=server.url, api_key_env=KEY_ENV, cache_dir=tmp_path, timeout=5, backoff=0.1, rpm=3000)
    n = 200
    results = llm.batch(calls(n, 'bucket'), progress=False)
    assert [r.error for r in results] == [None]*n and server.served == n
    granted = server.depth + (max(server.arrivals) - min(server.arrivals))*server.rpm/60 # what the bucket let through in the run
    print(f'\n{n} calls at 50/s, 20 at once: {server.statuses[429]} 429s, served {server.served} of {granted:.0f} the bucket granted, limit {llm._limit}')
    assert server.statuses[429] <= 3 and llm.usage['rate_limited'] == server.statuses[429]
    assert server.served >= 0.8*granted
    bucket = llm._rate['requests']
    assert not bucket.ours and abs(bucket.depth - server.depth) < 2 # its units are not ours, and the depth is read right
