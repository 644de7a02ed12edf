# Runs surveillance's farringtonFlexible on every series of a CSV, under the controls that
# tests/test_farrington.py runs in Python, and writes every monitored week's figures.
# Usage: Rscript farrington_series.R input.csv output.csv first_monitored_week
# input: series, week_start (ISO date of the Monday), observed, population
# output: series, config, week_start, upperbound, alarm, expected, score, pvalue
suppressMessages(library(surveillance))
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1])
first <- as.integer(args[3])
configs <- list(
  noufaily_nb  = list(b = 3, w = 3, alpha = 0.01, noPeriods = 10, pastWeeksNotIncluded = 26,
                      thresholdMethod = "nbPlugin", populationOffset = FALSE),
  noufaily_pop = list(b = 2, w = 3, alpha = 0.005, noPeriods = 10, pastWeeksNotIncluded = 26,
                      thresholdMethod = "nbPlugin", populationOffset = TRUE),
  muan         = list(b = 3, w = 2, alpha = 0.05, noPeriods = 10, pastWeeksNotIncluded = 26,
                      thresholdMethod = "muan", populationOffset = FALSE),
  farrington   = list(b = 3, w = 3, alpha = 0.01, noPeriods = 1, pastWeeksNotIncluded = 3,
                      thresholdMethod = "delta", populationOffset = FALSE)
)
out <- list()
for (s in unique(data$series)) {
  d <- data[data$series == s, ]
  d <- d[order(d$week_start), ]
  series <- sts(observed = d$observed, start = c(2018, 1), frequency = 52,
                epoch = as.Date(d$week_start), epochAsDate = TRUE,
                population = matrix(d$population, ncol = 1))
  for (name in names(configs)) {
    control <- c(configs[[name]], list(range = first:nrow(d), trend = TRUE, pThresholdTrend = 0.05,
                                       limit54 = c(5, 4), weightsThreshold = 2.58, reweight = TRUE,
                                       powertrans = "2/3", fitFun = "algo.farrington.fitGLM.flexible"))
    res <- farringtonFlexible(series, control = control)
    out[[length(out) + 1]] <- data.frame(
      series = s, config = name, week_start = d$week_start[control$range],
      upperbound = sprintf("%.12g", c(upperbound(res))), alarm = as.integer(c(alarms(res))),
      expected = sprintf("%.12g", c(res@control$expected)), score = sprintf("%.12g", c(res@control$score)),
      pvalue = sprintf("%.12g", c(res@control$pvalue)))
  }
}
write.csv(do.call(rbind, out), args[2], row.names = FALSE)
