"""startup.imports_frozen: heavy imports without the collector, frozen once, never again later."""

from __future__ import annotations

import json
import textwrap

from _factories import fresh_python


def test_imports_are_frozen_once_and_later_blocks_change_nothing() -> None:
    script = textwrap.dedent(
        """
        import gc, json, sys
        from digest.startup import imports_frozen
        seen = {}
        before = gc.get_freeze_count()
        with imports_frozen("digest.render"):
            seen["off_inside"] = not gc.isenabled()
            import digest.render
            with imports_frozen("digest.build"):  # nested: the outer block does the freezing
                seen["nested_froze"] = gc.get_freeze_count() > before
                import digest.build
        seen["on_after"] = gc.isenabled()
        seen["froze"] = gc.get_freeze_count() > before
        frozen = gc.get_freeze_count()
        with imports_frozen("digest.render"):  # already imported (a rebuild in digest serve)
            seen["on_inside_later"] = gc.isenabled()
        seen["froze_later"] = gc.get_freeze_count() != frozen
        print(json.dumps(seen))
        """
    )
    done = fresh_python(script)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "off_inside": True,
        "nested_froze": False,
        "on_after": True,
        "froze": True,
        "on_inside_later": True,
        "froze_later": False,
    }
