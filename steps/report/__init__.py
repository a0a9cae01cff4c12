"""Report stage: freeze the data a report shows into a versioned, hashed snapshot (``report.build``)."""

from .build import ReportBuild as ReportBuild

__all__ = ["ReportBuild"]
