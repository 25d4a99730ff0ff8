"A sweep on a two-node Ray cluster whose nodes share no disk leaves the folder, results and LLM cache of a local run."
import os, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llm_augment.experiment import collect_results, load_sweep, run_sweep
from llm_augment.llm import Cache

ray = pytest.importorskip('ray')

# Two cells with LLM pools of their own (one temperature each) and an oracle arm that always trains; two-core sized.
BASE = dict(backend=['local', 'oracle'], synthetic_share=[0.0, 0.1], calls_per_label=2, max_calls_per_label=2,
            responses_per_call=5, epochs=1, min_steps=0, max_length=32, n_boot=50)
GRID = {'temperature': [0.5, 1.0]}
# Columns that say where a run wrote or what it paid, not what it found.
WHERE_AND_COST = ['out_dir', 'prediction_cache', 'train_seconds', 'pool_seconds', 'llm_requests', 'llm_cached', 'llm_tokens',
                  'llm_cost_usd']


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def start_node(folder:Path, ray_dir:str, ip:str, *args) -> subprocess.Popen:
    "`ray start --block` of one CPU at loopback address `ip`, with its own HOME, TMPDIR, LLM cache and Ray temp dir."
    for sub in ('home', 'tmp', 'llm-cache'): (folder/sub).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != 'RAY_ADDRESS'}
    env.update(HOME=str(folder/'home'), TMPDIR=str(folder/'tmp'), LLM_AUGMENT_CACHE_DIR=str(folder/'llm-cache'),
               RAY_USAGE_STATS_ENABLED='0')
    ports = ['node-manager-port', 'object-manager-port', 'dashboard-agent-listen-port', 'dashboard-agent-grpc-port',
             'runtime-env-agent-port', 'metrics-export-port', 'ray-client-server-port', 'dashboard-port']
    flags = [x for p in ports for x in (f'--{p}', str(free_port()))]
    cmd = [str(Path(sys.executable).parent/'ray'), 'start', '--block', '--num-cpus', '1', '--node-ip-address', ip,
           '--temp-dir', ray_dir, '--disable-usage-stats', *flags, *args]
    log = open(folder/'ray-start.log', 'w')
    return subprocess.Popen(cmd, env=env, cwd=folder/'home', stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True) # its own process group: `stop_node` ends exactly these processes


def stop_node(node:subprocess.Popen):
    "End the node's processes, which all live in the process group its `ray start` leads."
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
        try: os.killpg(node.pid, sig)
        except ProcessLookupError: break
        try: node.wait(grace); break
        except subprocess.TimeoutExpired: pass
    try: os.killpg(node.pid, signal.SIGKILL) # what outlived its `ray start`
    except ProcessLookupError: pass


def wait_for(ready, node:subprocess.Popen, log:Path, seconds:float=120):
    "Wait until `ready()` while the node runs; fail with the tail of its log if it exits or takes too long."
    deadline = time.time() + seconds
    while not ready():
        assert node.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.fixture
def cluster(tmp_path):
    "Two Ray nodes at loopback addresses of their own (head 127.0.0.2, worker 127.0.0.3), sharing no folder."
    port, nodes = free_port(), []
    ray_dirs = [tempfile.mkdtemp(prefix='ray-') for _ in range(2)] # short: Ray's socket paths must fit in 107 bytes
    try:
        head_log, worker_log = tmp_path/'head'/'ray-start.log', tmp_path/'worker'/'ray-start.log'
        nodes.append(start_node(tmp_path/'head', ray_dirs[0], '127.0.0.2', '--head', '--port', str(port),
                                '--include-dashboard', 'false'))
        wait_for(lambda: 'Ray runtime started' in head_log.read_text(), nodes[0], head_log)
        address = f'127.0.0.2:{port}'
        nodes.append(start_node(tmp_path/'worker', ray_dirs[1], '127.0.0.3', '--address', address))
        wait_for(lambda: 'Ray runtime started' in worker_log.read_text(), nodes[1], worker_log)
        ray.init(address=address, log_to_driver=False)
        wait_for(lambda: sum(n['Alive'] for n in ray.nodes()) == 2, nodes[1], worker_log)
        yield address, tmp_path
    finally:
        ray.shutdown()
        for node in reversed(nodes): stop_node(node)
        for folder in ray_dirs: shutil.rmtree(folder, ignore_errors=True)


def sweep_file(path:Path) -> Path:
    path.write_text(yaml.safe_dump({'name': 'same', 'notebook': 'ratio', 'base': BASE, 'grid': GRID, 'seeds': [0]}))
    return path


def test_two_node_sweep_leaves_the_local_folder_and_pays_each_llm_call_once(cluster, monkeypatch):
    address, root = cluster
    driver_cache = root/'driver-llm-cache'
    monkeypatch.setenv('LLM_AUGMENT_CACHE_DIR', str(driver_cache))
    remote_sweep = load_sweep(sweep_file(root/'ray.yaml'), root=str(root/'ray'))
    remote = run_sweep(remote_sweep, executor='ray', address=address, progress=False)
    assert set(remote['status']) <= {'done', 'partial'} and remote['node'].nunique() == 2, remote # a cell on each node

    # What the nodes wrote came back into the driver's folder, with the driver's paths in it.
    node_tmp = [str(root/n/'tmp') for n in ('head', 'worker')]
    for cell in remote['cell']:
        folder = remote_sweep.folder/cell
        assert {'notebook.ipynb', 'results.csv', 'gains.csv', 'predictions.parquet', 'pool_local_seed0.csv',
                'pool_oracle_seed0.csv', 'fingerprint.json', 'params.yaml'} <= {p.name for p in folder.iterdir()}
        assert not [p for p in folder.iterdir() if any(t in p.read_text(errors='ignore') for t in node_tmp)]
        assert (pd.read_csv(folder/'results.csv')['out_dir'] == str(folder)).all()
    assert list((remote_sweep.folder/'predictions').glob('*.json'))
    assert not [p for n in ('head', 'worker') for p in (root/n/'tmp').glob('llm_augment-cell-*')] # temp folders gone
    assert not [p for n in ('head', 'worker') for p in (root/n/'llm-cache').iterdir()] # no node kept a cache of its own

    # Every answer a node paid for is in the driver's cache, once.
    ray_results, ray_gains = collect_results(remote_sweep.folder)
    paid = ray_results.groupby('cell')['llm_requests'].first()
    assert (paid > 0).all() and paid.sum() == len(Cache(driver_cache))

    # A rerun finds every cell finished: the fingerprints the nodes wrote are the driver's.
    assert (run_sweep(remote_sweep, executor='ray', address=address, progress=False)['status'] == 'skipped').all()

    # The local executor, trained separately (its own prediction cache), pays for nothing and finds the same.
    local_sweep = load_sweep(sweep_file(root/'local.yaml'), root=str(root/'local'))
    local = run_sweep(local_sweep, workers=2, progress=False)
    assert local.set_index('cell')['status'].to_dict() == remote.set_index('cell')['status'].to_dict()
    def models(sweep): return sorted(p.name for p in (sweep.folder/'predictions').glob('*.json'))
    assert models(local_sweep) == models(remote_sweep) # the same models, each trained again into its own cache
    local_results, local_gains = collect_results(local_sweep.folder)
    assert (local_results['llm_requests'] == 0).all() and (local_results['llm_cached'] > 0).all()
    assert len(Cache(driver_cache)) == paid.sum()
    def same(table):
        return table.drop(columns=WHERE_AND_COST, errors='ignore').sort_values(['cell', 'arm']).reset_index(drop=True)
    pd.testing.assert_frame_equal(same(ray_results), same(local_results))
    pd.testing.assert_frame_equal(same(ray_gains), same(local_gains))
