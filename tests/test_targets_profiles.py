"""Hardware profiles: one conformance suite over every registered profile, file loading."""
import dataclasses
import json
import math

import pytest

import neuromorphic_targets as nt
from neuromorphic_targets import Figure, get_profile, load_profile, save_profile
from neuromorphic_targets.profile_io import profile_to_dict


@pytest.mark.parametrize("name", sorted(nt.PROFILES))
def test_profile_conformance(name, tmp_path):
    prof = get_profile(name)
    assert prof.name == name and prof.family in nt.FAMILIES and prof.description
    assert isinstance(prof, nt.FAMILIES[prof.family])
    assert dataclasses.is_dataclass(prof)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prof.name = "other"
    units = prof.figure_units()
    assert units, "a profile without figures"
    for key, unit in units.items():
        fig = getattr(prof, key)
        assert isinstance(fig, Figure), key
        assert fig.unit == unit and unit in nt.UNITS, key
        # The unit ends the name (e_synop_j, tick_s) or the name counts what the unit names.
        assert key.endswith("_" + unit.lower()) or unit.rstrip("y") in key, (
            f"{key}: unit {unit!r} not visible in the name")
        assert fig.source.strip(), key
        assert isinstance(fig.verified, bool), key
        values = fig.value if isinstance(fig.value, tuple) else (fig.value,)
        for v in values:
            if v is not None:
                assert math.isfinite(v) and v > 0, key
        if fig.value is None:
            assert not fig.verified and "unknown" in fig.source.lower(), key
        assert prof.figure_docs()[key]
    # Round trip through both file formats gives an equal profile.
    for suffix in (".toml", ".json"):
        path = save_profile(prof, tmp_path / f"{name}{suffix}")
        assert load_profile(path) == prof


def test_get_profile_lists_valid_names():
    with pytest.raises(ValueError) as e:
        get_profile("spinnaker")
    msg = str(e.value)
    for name in ("truenorth", "dynap-se", "dynap-cnn", "loihi"):
        assert repr(name) in msg
    assert "'spinnaker'" in msg
    prof = get_profile("dynap-se")
    assert get_profile(prof) is prof


def test_unknown_figures_are_none_not_invented():
    assert get_profile("dynap-cnn").e_synop_j.value is None
    assert get_profile("dynap-se").p_static_w.value is None
    assert get_profile("loihi").tick_s.value is None
    assert "p_static_w" in get_profile("loihi").unknown()
    assert not get_profile("dynap-se").e_spike_j.verified  # commonly cited, not read


def _write(tmp_path, data, suffix=".json"):
    path = tmp_path / f"p{suffix}"
    path.write_text(json.dumps(data))
    return path


def _base_dict():
    return profile_to_dict(get_profile("truenorth"))


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d.update(colour="blue"), "colour"),
    (lambda d: d["figures"].update(e_magic_j={"value": 1.0, "unit": "J", "source": "x"}), "e_magic_j"),
    (lambda d: d["figures"]["tick_s"].update(precision=3), "precision"),
    (lambda d: d["figures"]["tick_s"].pop("unit"), "tick_s"),
    (lambda d: d["figures"]["tick_s"].update(unit="ms"), "tick_s"),
    (lambda d: d["figures"]["p_static_w"].update(value=-0.042), "p_static_w"),
    (lambda d: d["figures"]["cores_per_chip"].update(source=""), "cores_per_chip"),
    (lambda d: d["figures"].pop("axons_per_core"), "axons_per_core"),
    (lambda d: d["figures"]["tick_s"].update(value="fast"), "tick_s"),
])
def test_load_profile_errors_name_the_key(tmp_path, mutate, key):
    data = _base_dict()
    mutate(data)
    with pytest.raises(ValueError) as e:
        load_profile(_write(tmp_path, data))
    assert repr(key) in str(e.value)


def test_load_profile_with_base_and_unknown_value(tmp_path):
    toml = tmp_path / "tn.toml"
    toml.write_text('family = "truenorth"\nname = "tn-hot"\ndescription = "a hotter chip"\n'
                    'base = "truenorth"\n\n[figures.p_static_w]\nvalue = 0.06\nunit = "W"\n'
                    'source = "lab notebook 3, p. 12"\nverified = true\n\n[figures.e_route_hop_j]\n'
                    'value = "unknown"\nunit = "J"\nsource = "unknown: not measured"\n')
    prof = load_profile(toml)
    assert prof.name == "tn-hot" and prof.p_static_w.value == 0.06
    assert prof.e_route_hop_j.value is None
    assert prof.neurons_per_core == get_profile("truenorth").neurons_per_core
    assert nt.chip_power(prof, 0.0) == pytest.approx(0.06)


def test_load_profile_rejects_family_mismatch_and_bad_files(tmp_path):
    data = {"family": "dynap-se", "name": "x", "base": "truenorth"}
    with pytest.raises(ValueError, match="base"):
        load_profile(_write(tmp_path, data))
    with pytest.raises(ValueError, match="family"):
        load_profile(_write(tmp_path, {"family": "spinnaker", "name": "x"}))
    with pytest.raises(ValueError, match=r"\.toml or \.json"):
        load_profile(tmp_path / "p.yaml")
    bad = tmp_path / "bad.toml"
    bad.write_text("family = ")
    with pytest.raises(ValueError, match="could not parse"):
        load_profile(bad)


def test_register_profile(tmp_path):
    prof = get_profile("truenorth").replace(name="truenorth-test-register")
    try:
        nt.register_profile(prof)
        assert get_profile("truenorth-test-register") is prof
        with pytest.raises(ValueError, match="already registered"):
            nt.register_profile(prof)
    finally:
        nt.PROFILES.pop("truenorth-test-register", None)


def test_figure_validation_on_construction():
    with pytest.raises(ValueError, match="'tick_s'"):
        get_profile("truenorth").replace(tick_s=Figure(1e-3, "ms", "x", True))
    with pytest.raises(TypeError, match="'tick_s'"):
        get_profile("truenorth").replace(tick_s=1e-3)
    with pytest.raises(ValueError, match="non-negative"):
        get_profile("loihi").replace(e_synop_j=Figure(-1.0, "J", "x", True))
