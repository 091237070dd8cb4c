"""Command-line helpers that prepare data sets for tf_crnn (``python -m hlp.<name> --help``)."""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; shows a default only where there is one worth showing."""

    def _get_help_string(self, action):
        if action.default in (None, False, "") or action.required:
            return action.help
        return super()._get_help_string(action)
