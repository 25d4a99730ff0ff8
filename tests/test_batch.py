"""The Batch API path of `LLM.batch` against a loopback fake of OpenAI's Files and Batches endpoints (and chat
completions, for comparison): answers land in the same cache as online calls, failed and expired lines are
resubmitted, and a killed run resumes its job instead of paying for a second one."""
import email.parser, email.policy, http.server, json, re, signal, subprocess, sys, textwrap, threading, time
from collections import Counter

from dataclasses import replace

import pytest

from llm_augment.llm import LLM, BatchLedger, as_request, batch_digest
from loopback import JsonHandler, serving

pytestmark = pytest.mark.timeout(180)


def answer(body):
    "The fake model's chat completion: it echoes the prompt."
    prompt = body['messages'][-1]['content']
    return {'id': 'chatcmpl-1', 'object': 'chat.completion', 'created': 0, 'model': body['model'],
            'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': f'echo: {prompt}'}, 'finish_reason': 'stop'}],
            'usage': {'prompt_tokens': 10, 'completion_tokens': 5, 'total_tokens': 15}}


class FakeOpenAI(http.server.ThreadingHTTPServer):
    "Files, Batches and chat completions on loopback; a job ends on its `polls_to_finish`-th look once `release` is set."
    daemon_threads = True

    def __init__(self):
        super().__init__(('127.0.0.1', 0), FakeHandler)
        self.lock = threading.Lock()
        self.reset()

    def reset(self, fail_once=(), expire_first_after=None, hold=False, polls_to_finish=2, fail_job=False):
        self.fail_job = fail_job # every job fails validation
        self.files, self.batches, self.polls, self.chat_calls = {}, {}, Counter(), 0
        self.created = [] # the input lines of each job created, in order
        self.fail_once, self.failed = set(fail_once), set() # prompts whose first line fails
        self.expire_first_after = expire_first_after # the first job expires with only this many lines done
        self.polls_to_finish, self.release = polls_to_finish, threading.Event()
        if not hold: self.release.set()

    @property
    def url(self): return f'http://127.0.0.1:{self.server_port}/v1'

    def new_file(self, content, purpose):
        fid = f'file-{len(self.files)}'
        self.files[fid] = content
        return {'id': fid, 'object': 'file', 'bytes': len(content), 'created_at': 0, 'filename': f'{fid}.jsonl',
                'purpose': purpose, 'status': 'processed'}

    def finish(self, job):
        "Answer a job's lines: some fail (error file), an expired one leaves the rest unanswered."
        lines = [json.loads(l) for l in self.files[job['input_file_id']].decode().splitlines() if l.strip()]
        if self.fail_job:
            return job.update(status='failed', errors={'object': 'list', 'data': [{'code': 'invalid', 'message': 'invalid model'}]})
        expire = self.expire_first_after is not None and job['id'] == 'batch-0'
        out, err = [], []
        for line in lines[:self.expire_first_after] if expire else lines:
            prompt = line['body']['messages'][-1]['content']
            if prompt in self.fail_once and prompt not in self.failed:
                self.failed.add(prompt)
                err.append({'id': 'r', 'custom_id': line['custom_id'], 'error': None,
                            'response': {'status_code': 500, 'request_id': 'r', 'body': {'error': {'message': 'boom'}}}})
            else:
                out.append({'id': 'r', 'custom_id': line['custom_id'], 'error': None,
                            'response': {'status_code': 200, 'request_id': 'r', 'body': answer(line['body'])}})
        dump = lambda rows: ''.join(json.dumps(r) + '\n' for r in rows).encode()
        job.update(status='expired' if expire else 'completed',
                   output_file_id=self.new_file(dump(out), 'batch_output')['id'] if out else None,
                   error_file_id=self.new_file(dump(err), 'batch_output')['id'] if err else None,
                   request_counts={'total': len(lines), 'completed': len(out), 'failed': len(err)})

    def handle_error(self, request, client_address): pass # a killed client closed its end: expected here


class FakeHandler(JsonHandler):
    def do_POST(self):
        f, raw = self.server, self.rfile.read(int(self.headers['content-length']))
        with f.lock:
            if self.path == '/v1/chat/completions':
                f.chat_calls += 1
                return self.reply(200, answer(json.loads(raw)))
            if self.path == '/v1/files':
                head = f"content-type: {self.headers['content-type']}\r\n\r\n".encode()
                parts = {p.get_param('name', header='content-disposition'): p.get_payload(decode=True)
                         for p in email.parser.BytesParser(policy=email.policy.default).parsebytes(head + raw).iter_parts()}
                return self.reply(200, f.new_file(parts['file'], parts['purpose'].decode()))
            if self.path == '/v1/batches':
                ask = json.loads(raw)
                assert (ask['endpoint'], ask['completion_window']) == ('/v1/chat/completions', '24h')
                bid = f'batch-{len(f.batches)}'
                f.batches[bid] = {'id': bid, 'object': 'batch', 'endpoint': ask['endpoint'], 'input_file_id': ask['input_file_id'],
                                  'completion_window': '24h', 'status': 'validating', 'created_at': 0,
                                  'request_counts': {'total': 0, 'completed': 0, 'failed': 0}}
                f.created.append([json.loads(l) for l in f.files[ask['input_file_id']].decode().splitlines()])
                return self.reply(200, f.batches[bid])
        self.reply(404, {'error': {'message': f'no {self.path}'}})

    def do_GET(self):
        f = self.server
        with f.lock:
            if m := re.fullmatch(r'/v1/batches/([\w-]+)', self.path):
                if m[1] not in f.batches: return self.reply(404, {'error': {'message': f'no batch {m[1]}'}})
                job = f.batches[m[1]]
                f.polls[job['id']] += 1
                if job['status'] not in ('completed', 'expired'):
                    job['status'] = 'in_progress'
                    if f.release.is_set() and f.polls[job['id']] >= f.polls_to_finish: f.finish(job)
                return self.reply(200, job)
            if m := re.fullmatch(r'/v1/files/([\w-]+)/content', self.path): return self.reply(200, f.files[m[1]])
        self.reply(404, {'error': {'message': f'no {self.path}'}})


@pytest.fixture(scope='module')
def fake_server():
    yield from serving(FakeOpenAI())


@pytest.fixture
def fake(fake_server):
    fake_server.reset()
    return fake_server


def requests_for(n, tag='q'): return [{'messages': f'Say one word about {tag}{i}.', 'max_tokens': 8} for i in range(n)]


def client(fake, tmp_path, **kw):
    return LLM('openai', model='fake-model', base_url=fake.url, cache_dir=tmp_path/'cache', batch_api=True, batch_poll=0.02,
               prices={'fake-model': (1000.0, 1000.0)}, **kw)


def test_batch_end_to_end_shares_the_cache_with_online_calls(fake, tmp_path):
    reqs = requests_for(6)
    online = LLM('openai', model='fake-model', base_url=fake.url, cache_dir=tmp_path/'cache', prices={'fake-model': (1000.0, 1000.0)})
    first = online.batch(reqs[:2], progress=False) # two answered online first: the batch sends only the other four
    assert fake.chat_calls == 2 and online.usage['cost_usd'] == pytest.approx(2*0.015)
    llm = client(fake, tmp_path)
    results = llm.batch(reqs, progress=False)
    assert [r.text for r in results] == [f"echo: {r['messages']}" for r in reqs]
    assert [r.cached for r in results] == [True]*2 + [False]*4 and results[:2] == [replace(c, cached=True, attempts=0) for c in first]
    assert len(fake.created) == 1 and len(fake.created[0]) == 4 and fake.chat_calls == 2
    line = fake.created[0][0]
    assert (line['method'], line['url'], line['custom_id']) == ('POST', '/v1/chat/completions', llm._key(as_request(reqs[2])))
    assert line['body']['messages'] == [{'role': 'user', 'content': reqs[2]['messages']}] and line['body']['model'] == 'fake-model'
    u = llm.usage
    assert (u['requests'], u['cached'], u['batched'], u['failed'], u['sent']) == (6, 2, 4, 0, 4)
    assert u['cost_usd'] == pytest.approx(4*0.015/2) # half price
    assert '4 answered through the Batch API' in llm.usage_line()
    assert len(llm.cache) == 6 and BatchLedger(tmp_path/'cache').jobs() == {}
    again = llm.batch(reqs, progress=False) # a second run sends nothing, batched or online
    assert all(r.cached for r in again) and len(fake.created) == 1
    online_again = online.batch(reqs, progress=False)
    assert all(r.cached for r in online_again) and fake.chat_calls == 2
    assert [r.text for r in online_again] == [r.text for r in results]


def test_failed_lines_are_resubmitted(fake, tmp_path):
    reqs = requests_for(5, tag='f')
    fake.reset(fail_once={reqs[1]['messages'], reqs[3]['messages']})
    llm = client(fake, tmp_path)
    results = llm.batch(reqs, progress=False)
    assert all(r.error is None for r in results) and [r.text for r in results] == [f"echo: {r['messages']}" for r in reqs]
    assert [len(lines) for lines in fake.created] == [5, 2]
    assert {l['body']['messages'][-1]['content'] for l in fake.created[1]} == {reqs[1]['messages'], reqs[3]['messages']}
    assert [r.attempts for r in results] == [1, 2, 1, 2, 1]
    assert (llm.usage['batched'], llm.usage['retries'], llm.usage['attempts'], llm.usage['failed']) == (5, 2, 7, 0)


def test_lines_that_keep_failing_are_reported(fake, tmp_path):
    reqs = requests_for(3, tag='bad')
    fake.reset(fail_once={reqs[0]['messages']})
    llm = client(fake, tmp_path, batch_retries=0) # no second job: the failed line stays failed
    results = llm.batch(reqs, progress=False)
    assert results[0].text is None and results[0].error == 'batch line 500: boom'
    assert [r.text for r in results[1:]] == [f"echo: {r['messages']}" for r in reqs[1:]]
    assert llm.usage['failed'] == 1 and len(llm.failures) == 1 and len(llm.cache) == 2
    assert '1 of 3 LLM calls failed' in llm.failure_report()
    rerun = llm.batch(reqs, progress=False) # a rerun sends only the failed line
    assert rerun[0].text == f"echo: {reqs[0]['messages']}" and [len(lines) for lines in fake.created] == [3, 1]


def test_expired_batch_resubmits_the_rest(fake, tmp_path):
    reqs = requests_for(6, tag='x')
    fake.reset(expire_first_after=4)
    llm = client(fake, tmp_path)
    results = llm.batch(reqs, progress=False)
    assert all(r.error is None for r in results) and [r.text for r in results] == [f"echo: {r['messages']}" for r in reqs]
    assert [len(lines) for lines in fake.created] == [6, 2]
    assert [l['body']['messages'][-1]['content'] for l in fake.created[1]] == [r['messages'] for r in reqs[4:]]
    assert fake.batches['batch-0']['status'] == 'expired' and llm.usage['batched'] == 6


RUN = textwrap.dedent('''
    import sys
    from llm_augment.llm import LLM
    llm = LLM('openai', model='fake-model', base_url=sys.argv[1], cache_dir=sys.argv[2], batch_api=True, batch_poll=0.02)
    llm.batch([{'messages': f'Say one word about k{i}.', 'max_tokens': 8} for i in range(int(sys.argv[3]))], progress=False)
''')


def test_killed_run_resumes_its_batch(fake, tmp_path):
    fake.reset(hold=True) # the job stays in progress until released
    cache_dir, n = tmp_path/'cache', 5
    run = subprocess.Popen([sys.executable, '-c', RUN, fake.url, str(cache_dir), str(n)])
    try:
        deadline = time.monotonic() + 120
        while fake.polls['batch-0'] < 1: # created, recorded, and being waited for
            assert run.poll() is None and time.monotonic() < deadline, 'the first run should be waiting for its batch'
            time.sleep(0.05)
    finally: run.send_signal(signal.SIGKILL); run.wait(10)
    assert len(fake.created) == 1 and list(BatchLedger(cache_dir).jobs().values()) == ['batch-0']
    fake.release.set() # the job finishes while nobody waits for it
    llm = LLM('openai', model='fake-model', base_url=fake.url, cache_dir=cache_dir, batch_api=True, batch_poll=0.02)
    results = llm.batch([{'messages': f'Say one word about k{i}.', 'max_tokens': 8} for i in range(n)], progress=False)
    assert [r.text for r in results] == [f'echo: Say one word about k{i}.' for i in range(n)]
    assert len(fake.created) == 1 and fake.polls['batch-0'] >= 2 # polled the recorded job, submitted none
    assert BatchLedger(cache_dir).jobs() == {} and len(llm.cache) == n


def test_a_recorded_batch_the_server_forgot_is_submitted_anew(fake, tmp_path):
    reqs = requests_for(3, tag='gone')
    llm = client(fake, tmp_path)
    ledger = BatchLedger(tmp_path/'cache')
    ledger.set(batch_digest([llm._key(as_request(r)) for r in reqs]), 'batch-unknown')
    results = llm.batch(reqs, progress=False)
    assert [r.text for r in results] == [f"echo: {r['messages']}" for r in reqs]
    assert len(fake.created) == 1 and ledger.jobs() == {}


def test_a_failed_job_reports_its_errors(fake, tmp_path):
    reqs = requests_for(2, tag='invalid')
    fake.reset(fail_job=True)
    llm = client(fake, tmp_path, batch_retries=1)
    results = llm.batch(reqs, progress=False)
    assert [r.error for r in results] == ['batch failed: the line got no answer (invalid model)']*2
    assert len(fake.created) == 2 and llm.usage['failed'] == 2 and len(llm.cache) == 0


def test_a_budget_admits_what_fits_at_half_price(fake, tmp_path):
    reqs = requests_for(4, tag='b') # worst case 12 prompt + 8 answer tokens: $0.02 online, $0.01 batched
    llm = client(fake, tmp_path, budget_usd=0.025)
    results = llm.batch(reqs, progress=False)
    assert [r.error for r in results] == [None, None, 'budget', 'budget']
    assert len(fake.created[0]) == 2 and llm.usage['cost_usd'] == pytest.approx(2*0.015/2)
