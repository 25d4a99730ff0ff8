"Package set-up read from settings.ini (nbdev 2 layout)."
import shlex, shutil
from configparser import ConfigParser
from pathlib import Path
import setuptools
from setuptools.command.build_py import build_py

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']
licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable']
requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
scripts = [s.strip() for s in cfg.get('console_scripts', '').split('\n') if s.strip()]

class build_py_with_experiments(build_py):
    "Copy the experiment notebooks (nbs/experiments/*.ipynb) into the built package, so a wheel carries them."
    def run(self):
        super().run()
        target = Path(self.build_lib)/cfg['lib_path']/'experiments'
        target.mkdir(parents=True, exist_ok=True)
        for nb in sorted(Path(cfg['nbs_path'], 'experiments').glob('*.ipynb')): shutil.copy2(nb, target/nb.name)

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    license=licenses[cfg['license']][0], author=cfg['author'], author_email=cfg['author_email'],
    keywords=cfg['keywords'], url=cfg['git_url'], python_requires='>=' + cfg['min_python'],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'],
                 'License :: ' + licenses[cfg['license']][1],
                 'Natural Language :: ' + cfg['language']],
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*']),
    package_data={cfg['lib_name']: ['tasks/*.yaml', 'examples/*', 'examples/*/*']}, cmdclass={'build_py': build_py_with_experiments},
    install_requires=requirements, extras_require={'dev': dev_requirements},
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False)
