// Alerts by e-mail (main.bicep deploys this module only with an address): a failure alert, when any
// mirror orchestration or activity fails or a series' run ends failed, and a dead man's switch, when a
// series has had no successful check for longer than the schedule allows (a stopped timer, a broken
// deployment, an expired secret). Both read the app's log lines in Application Insights: the
// Durable extension's own (Host.Triggers.DurableTask, state Failed) and the one line every run ends
// with, written by src/steps.ts recordRun: `mirror check of <series>: <succeeded|failed>; ...`.

@description('Region of the alert rules.')
param location string

@description('Tags of every resource.')
param tags { *: string }

@description('Suffix of every resource name.')
param resourceToken string

@description('Application Insights component the app logs to.')
param applicationInsightsName string

@description('Who receives the alerts.')
param alertEmail string

@description('The series the app mirrors (BASM_STEMCELL_SERIES, split).')
param stemcellSeries string[]

@minValue(1)
@maxValue(46)
@description('Hours between two scheduled checks of a series; the dead man\'s switch waits two more.')
param checkIntervalHours int

// Built-in Reader: read-only, and enough to query the component's logs (components/query/read); no
// narrower built-in role can run a query.
var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
var silentHours = checkIntervalHours + 2

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'stemcells'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Durable failures (an orchestration, or an activity that threw: retried transient errors included) and
// runs that ended with a failed version (the mirror returns permanent failures as values, which Durable
// counts as Completed).
var failureQuery = '''
let durableFailures = traces
  | where tostring(customDimensions.Category) == "Host.Triggers.DurableTask"
  | where tostring(customDimensions.prop__state) == "Failed"
  | where tobool(customDimensions.prop__isReplay) != true
  | project timestamp, what = strcat(tostring(customDimensions.prop__functionType), " ", tostring(customDimensions.prop__functionName), " failed (instance ", tostring(customDimensions.prop__instanceId), ")");
let failedRuns = traces
  | where message startswith "mirror check of " and message has ": failed;"
  | project timestamp, what = message;
union durableFailures, failedRuns
'''

resource failureAlert 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = {
  name: 'alert-mirror-failed-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    displayName: 'Stemcell mirror: a run failed'
    description: 'A mirror orchestration or activity failed, or a series run ended with a failed version. `npm run --silent stemcell-mirror -- status` and the function log say which and why.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: failureQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// One row per configured series without a successful check inside the window.
var silenceQuery = '''
let checked = traces
  | where message startswith "mirror check of "
  | parse message with "mirror check of " series ": " outcome "; " *
  | where outcome == "succeeded"
  | distinct series;
print series = dynamic(SERIES_LIST)
| mv-expand series to typeof(string)
| join kind=leftanti checked on series
'''

resource silenceAlert 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = {
  name: 'alert-mirror-silent-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    displayName: 'Stemcell mirror: a series has not been checked'
    description: 'No successful check of a series for ${silentHours} hours: the timer stopped, the app is broken or a secret expired. `npm run --silent stemcell-mirror -- status` shows the last run of each series.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT${silentHours}H'
    criteria: {
      allOf: [
        {
          query: replace(silenceQuery, 'SERIES_LIST', string(stemcellSeries))
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Each rule runs its query as its own identity, which must be able to read the component's logs.
resource failureAlertReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, failureAlert.id, readerRoleId)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
    principalId: failureAlert.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The dead man's switch reads the same logs, as its own identity.
resource silenceAlertReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, silenceAlert.id, readerRoleId)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
    principalId: silenceAlert.identity.principalId
    principalType: 'ServicePrincipal'
  }
}
