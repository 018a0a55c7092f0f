"""Every notebook under notebooks/ executes top to bottom without an error."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, 'notebooks', '*.ipynb')))


def test_there_are_notebooks():
  assert NOTEBOOKS


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path):
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name='python3',
                 resources={'metadata': {'path': os.path.dirname(path)}}).execute()
  text = '\n'.join(o.get('text', '') for c in notebook.cells if c.cell_type == 'code' for o in c.get('outputs', []))
  if os.path.basename(path) == 'quickstart.ipynb':
    assert 'trained to step 30' in text and 'bits/dim' in text
    assert any('image/png' in o.get('data', {}) for c in notebook.cells for o in c.get('outputs', []))
