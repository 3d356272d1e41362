"""The paper's experiments (Norcliffe & Deisenroth, TMLR 2023), one module each; the runner is
:mod:`validation.experiments.run` (``python -m validation.experiments --quick``)."""
