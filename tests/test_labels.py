from __future__ import annotations

import pytest

from ser.errors import ConfigError
from ser.emotion.labels import EMOTIONS, LABEL_SETS, map_label, map_probabilities


def test_label_sets():
    assert EMOTIONS == LABEL_SETS["ravdess8"].labels
    assert len(LABEL_SETS["ravdess8"]) == 8 and "calm" not in LABEL_SETS["basic7"].labels
    assert LABEL_SETS["basic7"].labels == ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    assert LABEL_SETS["four"].labels == ("neutral", "happy", "sad", "angry")
    assert LABEL_SETS["valence3"].labels == ("neutral", "positive", "negative")
    assert LABEL_SETS["valence2"].labels == ("positive", "negative")


def test_map_label():
    assert map_label("calm", "four") == "neutral"
    assert map_label("fearful", "four") is None
    assert map_label("surprised", "valence2") == "positive"
    assert map_label("neutral", "valence2") is None
    with pytest.raises(ConfigError, match="Unknown emotion 'bored'"):
        map_label("bored", "four")
    with pytest.raises(ConfigError, match="Unknown label set 'five'"):
        map_label("sad", "five")


def test_map_probabilities_sums_and_renormalises():
    p = dict(zip(EMOTIONS, [0.1, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.2]))
    v3 = map_probabilities(p, "valence3")
    assert v3 == pytest.approx({"neutral": 0.2, "positive": 0.4, "negative": 0.4})
    four = map_probabilities(p, "four")
    # neutral and calm both become neutral; fearful, disgust and surprised are dropped
    assert four == pytest.approx({"neutral": 0.2 / 0.6, "happy": 0.2 / 0.6, "sad": 0.1 / 0.6, "angry": 0.1 / 0.6})
    assert sum(map_probabilities(p, "valence2").values()) == pytest.approx(1.0)


def test_map_probabilities_of_the_same_set_is_identity():
    p = {"positive": 0.3, "negative": 0.7}
    assert map_probabilities(p, "valence2") == pytest.approx(p)
