# Runs surveillance's algo.glrnb on every series of a CSV, under the configurations that
# tests/test_glrnb.py runs in Python, and writes every week's upperbound and alarm.
# Usage: Rscript glrnb_series.R input.csv output.csv
# input: series, week (1-based), observed, mu0 (NA = let R estimate mu0 with glm.nb)
# output: series, config, week, upperbound, alarm, alpha
suppressMessages(library(surveillance))
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1])
# name -> control (range and mu0 are filled in per series); the first 52 weeks are the baseline when
# mu0 is estimated.
configs <- list(
  nb_given      = list(c.ARL = 5, alpha = 0.2, ret = "value"),
  nb_window     = list(c.ARL = 4, alpha = 0.3, M = 10, Mtilde = 2, ret = "value"),
  nb_dec        = list(c.ARL = 3, alpha = 0.2, dir = "dec", ret = "value"),
  pois_value    = list(c.ARL = 5, alpha = 0, ret = "value"),
  pois_cases    = list(c.ARL = 5, alpha = 0, ret = "cases"),
  pois_window   = list(c.ARL = 4, alpha = 0, M = 8, Mtilde = 1, ret = "cases"),
  lr_nb_value   = list(c.ARL = 3, alpha = 0.2, theta = log(2), ret = "value"),
  lr_nb_cases   = list(c.ARL = 3, alpha = 0.2, theta = log(2), ret = "cases"),
  lr_pois_cases = list(c.ARL = 3, alpha = 0, theta = log(1.5), ret = "cases"),
  estimated     = list(c.ARL = 5, alpha = NULL, ret = "value", mu0 = list(S = 1, trend = FALSE)),
  estimated_s2t = list(c.ARL = 5, alpha = NULL, ret = "value", mu0 = list(S = 2, trend = TRUE))
)
out <- list()
for (s in unique(data$series)) {
  d <- data[data$series == s, ]
  d <- d[order(d$week), ]
  disprog <- suppressWarnings(create.disProg(week = d$week, observed = d$observed, state = 0 * d$week, freq = 52))
  for (name in names(configs)) {
    control <- configs[[name]]
    if (is.list(control$mu0)) {
      control$range <- 53:nrow(d)
    } else {
      control$range <- seq_len(nrow(d))
      control$mu0 <- d$mu0
    }
    if (!("alpha" %in% names(control))) control["alpha"] <- list(NULL)
    res <- algo.glrnb(disprog, control = control)
    out[[length(out) + 1]] <- data.frame(series = s, config = name, week = control$range,
                                         upperbound = sprintf("%.12g", c(res$upperbound)),
                                         alarm = as.integer(c(res$alarm)),
                                         alpha = sprintf("%.12g", res$control$alpha))
  }
}
write.csv(do.call(rbind, out), args[2], row.names = FALSE)
