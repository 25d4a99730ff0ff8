"`llm_augment data check` end to end: the bundled example passes, every bad input ends in one stderr line."
import subprocess, sys
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from llm_augment.data import example_data_path


def run(*args):
    "Run `python -m llm_augment.cli` in a subprocess; return (exit code, stdout, stderr lines)."
    done = subprocess.run([sys.executable, '-m', 'llm_augment.cli', *map(str, args)], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr.splitlines()


def test_example_passes_and_prints_kappa():
    code, out, err = run('data', 'check', example_data_path(), '--task', 'cultural_competence')
    assert code == 0 and err == []
    assert 'rows        120 kept' in out and 'rater1 vs rater2: kappa 0.848' in out and '1: 66 (55.0%)' in out


def test_datashop_option(tmp_path):
    path = tmp_path / 'export.txt'
    path.write_text('Level (Lesson)\tProblem Name\tInput\tOpen_response_score_human_truth\tRater1_codes\tRater2_codes\n'
                    'L1\tq1\tWhat do you miss about home?\t1\t1\t1\nL1\tq1\tDo page 3.\t0\t0\t0\nL1\tq1\tB\t\t\t\n'
                    'L2\tq2\tNice!\t1\t1\t1\n')
    code, out, err = run('data', 'check', path, '--datashop', '--lesson', 'L1')
    assert code == 0 and err == [] and 'rows        2 kept, 1 dropped' in out and 'kappa 1.000' in out


def test_dropped_rows_are_counted_on_stdout(tmp_path):
    path = tmp_path / 'gaps.csv'
    path.write_text('text,label\na,1\n,0\nb,\nc,0\n')
    code, out, err = run('data', 'check', path)
    assert code == 0 and err == []
    assert 'rows        2 kept, 2 dropped (1 with empty text, 1 without a label)' in out


BAD = {  # file name -> (content as bytes or None for no file, extra args, what the one stderr line must say)
    'missing.csv': (None, [], 'no such file'),
    'empty.csv': (b'', [], 'the file is empty'),
    'header_only.csv': (b'text,label\n', [], 'has a header but no rows'),
    'no_text.csv': (b'response,label\nhi,1\nbye,0\n', [], "no text column 'text'; the columns are 'response', 'label'; choose one with --text-col"),
    'no_label.csv': (b'text,code\nhi,1\nbye,0\n', [], "no label column 'label'; the columns are 'text', 'code'; choose one with --label-col"),
    'no_item.csv': (b'text,label\nhi,1\nbye,0\n', ['--item-col', 'question'], "no item column 'question'"),
    'outside.csv': (b'text,label\na,0\nb,1\nc,2\nd,2\ne,3\n', ['--task', 'cultural_competence'],
                    "3 rows have labels outside task 'cultural_competence''s label set [0, 1]: '2' (2 rows), '3' (1 row)"),
    'words.csv': (b'text,label\na,yes\nb,no\n', [], "column 'label' has values that are not integer codes: 'yes' (1 row), 'no' (1 row)"),
    'one_class.csv': (b'text,label\na,1\nb,1\nc,1\n', [], 'every row has label 1'),
    'latin1.csv': ('text,label\nt\xfa,1\nok,0\n'.encode('latin-1'), [], 'is not valid utf-8; give the file\'s encoding with --encoding'),
    'blank.csv': (b'text,label\n ,1\n,0\n', [], "all 2 values of text column 'text' are empty"),
    'bad_encoding.csv': (b'text,label\na,1\nb,0\n', ['--encoding', 'klingon'], "unknown encoding 'klingon'"),
}


@pytest.mark.parametrize('name', BAD)
def test_bad_input_is_one_line(name, tmp_path):
    content, extra, message = BAD[name]
    path = tmp_path / name
    if content is not None: path.write_bytes(content)
    code, out, err = run('data', 'check', path, *extra)
    assert code == 2, (out, err)
    assert len(err) == 1, err
    assert err[0].startswith('llm_augment: ') and name in err[0] and message in err[0], err[0]


def test_unknown_task_is_one_line(tmp_path):
    path = tmp_path / 'ok.csv'
    path.write_text('text,label\na,1\nb,0\n')
    code, _, err = run('data', 'check', path, '--task', 'no_such_task')
    assert code == 2 and len(err) == 1 and "unknown task 'no_such_task': give a built-in task (cultural_competence" in err[0]


def test_missing_datashop_lesson_is_one_line(tmp_path):
    path = tmp_path / 'export.txt'
    path.write_text('Level (Lesson)\tInput\tOpen_response_score_human_truth\nL1\thi\t1\nL1\tbye\t0\n')
    code, _, err = run('data', 'check', path, '--datashop', '--lesson', 'L9')
    assert code == 2 and len(err) == 1 and "no rows for lesson 'L9'; lessons in the file: 'L1'" in err[0]


def test_debug_shows_traceback(tmp_path):
    code, _, err = run('data', 'check', tmp_path / 'missing.csv', '--debug')
    assert code == 2 and err[0].startswith('Traceback') and err[-1].startswith('llm_augment: ')


def test_console_script_and_in_process(tmp_path, capsys):
    from llm_augment.cli import main
    assert main(['data', 'check', str(tmp_path / 'nope.csv')]) == 2
    assert capsys.readouterr().err.strip() == f"llm_augment: {tmp_path / 'nope.csv'}: no such file"
    done = subprocess.run(['llm_augment', 'data', 'check', str(example_data_path())], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and 'kappa 0.848' in done.stdout


def test_copies_and_person_overlap_lines(tmp_path):
    rows = [dict(text=text, label=int(text in ('yes', 'Yes!') or i % 2 == 0), item=item, respondent=f'p{i}')
            for i in range(12) for item, text in [('Q1', 'yes' if i % 2 == 0 else f'answer {i}'), ('Q2', f'reason {i}'),
                                                  ('Q3', 'no' if i % 3 == 0 else f'other {i}')]]
    table = pd.DataFrame(rows)
    table.to_csv(path := tmp_path / 'people.csv', index=False)
    code, out, err = run('data', 'check', path)
    assert code == 0 and err == []
    lines = {line[:12].strip(): line[12:] for line in out.splitlines()}
    assert lines['copies'] == '10 of 36 rows (27.8%) share their item and normalised text with another row'
    assert lines['persons'] == '12 (column person)'
    train, test = train_test_split(table, train_size=1 / 3, stratify=table.label, random_state=0)  # the paper's split
    copied = (test.item + test.text).isin(set(train.item + train.text)).mean()
    person = test.respondent.isin(set(train.respondent)).mean()
    assert lines['paper'] == (f'split at seed 0: {copied:.1%} of 24 test rows have an exact copy in train+valid, '
                              f'{person:.1%} have their person there') and person > 0
    assert lines['grouped'].startswith('split at seed 0: 0.0% of ')
    assert ', 0.0% have their person there' in lines['grouped']


@pytest.mark.parametrize('name', ['powergrading', 'semeval2013_sra_2way', 'mohler_asag', 'ncte_uptake'])
def test_task_new_drafts_a_spec_that_data_check_accepts_once_filled(name, tmp_path, shared):
    data, spec = shared(name), tmp_path/f'{name}.yaml'
    code, out, err = run('task', 'new', '--from', data, '--out', spec)
    assert code == 0 and err == [] and 'write these fields:' in out
    code, _, err = run('data', 'check', data, '--task', spec)  # a draft with TODO lines is refused, in one line
    assert code == 2 and len(err) == 1 and 'TODO' in err[0]
    spec.write_text('\n'.join(line.replace("'TODO:", "'Filled in:") for line in spec.read_text().splitlines()))
    code, out, err = run('data', 'check', data, '--task', spec)
    assert code == 0 and err == [] and 'labels' in out
