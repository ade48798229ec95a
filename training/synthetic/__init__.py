"""A seeded synthetic survey: ZTF-like and LSST-like alert streams of labelled light curves.

>>> from training.synthetic import SurveyConfig, generate_survey
>>> lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=100, seed=1))

See docs/synthetic.md for the models, the cadences and a comparison with real ZTF data.
"""

from .cadence import LSST, SURVEYS, ZTF, SurveyModel
from .models import SAMPLERS, Source
from .survey import (
    DEFAULT_CLASS_WEIGHTS,
    SurveyConfig,
    generate_object,
    generate_survey,
    iter_survey,
    read_parquet,
    write_parquet,
)

__all__ = [
    "DEFAULT_CLASS_WEIGHTS",
    "LSST",
    "SAMPLERS",
    "SURVEYS",
    "ZTF",
    "Source",
    "SurveyConfig",
    "SurveyModel",
    "generate_object",
    "generate_survey",
    "iter_survey",
    "read_parquet",
    "write_parquet",
]
