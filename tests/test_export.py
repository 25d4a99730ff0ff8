"The CI export check: a hand edit of an exported module is caught, a clean tree passes."
import shutil, subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def sh(cmd, cwd): return subprocess.run(cmd, cwd=cwd, shell=True, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def clone(tmp_path):
    "A committed copy of the notebooks, settings and package, as CI's fresh clone has them."
    dst = tmp_path/'repo'
    for part in ['nbs', 'llm_augment', 'settings.ini', 'setup.py', 'README.md']:
        src = REPO/part
        (shutil.copytree(src, dst/part, ignore=shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints', 'runs'))
         if src.is_dir() else shutil.copy(src, dst/part))
    sh('git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm base', dst)
    return dst


def export_changes(repo): sh('nbdev_export', repo); return sh('git status --porcelain -- nbs llm_augment', repo)


def test_clean_tree_passes_the_export_check(clone):
    assert export_changes(clone) == ''


def test_hand_edit_of_a_module_fails_the_export_check(clone):
    module = clone/'llm_augment'/'evaluate.py'
    module.write_text(module.read_text() + '\nHAND_EDIT = 1\n')
    sh('git -c user.name=t -c user.email=t@t commit -qam "edit a module by hand"', clone)
    assert 'llm_augment/evaluate.py' in export_changes(clone)
