"""Reports: tables, figures, robustness views, calibration, comparisons and paper tables."""
